"""The national platform's control plane: signed configuration packages on 8882, release
manifests, verified upgrades and rollbacks."""
