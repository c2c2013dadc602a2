"""Connections, migrations and the private-cluster helper."""
