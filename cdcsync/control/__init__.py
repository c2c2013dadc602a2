"""The national platform's control plane: signed configuration packages on 8882, release
manifests, verified upgrades and rollbacks.

Beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``, in the other direction:
what the platform sends to the hospital (code tables, rules, versions)."""
