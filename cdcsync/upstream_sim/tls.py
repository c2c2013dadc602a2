"""Self-signed TLS material for the reference platform.

A throw-away CA (``ca.pem``) signs the server certificate (``server.pem``/``server.key``) for
localhost, 127.0.0.1 and ::1 (:func:`cdcsync.crypto.tls.write_self_signed`, the same generator as
``cdcsync keys tls-selfsigned``). The hospital side trusts ``ca.pem`` as its CA bundle.
"""

from __future__ import annotations

from pathlib import Path

from cdcsync.crypto.tls import TlsFiles, default_hosts, tls_files, write_self_signed

__all__ = ["TlsFiles", "ensure_self_signed"]


def ensure_self_signed(directory: Path, hosts: list[str] | None = None) -> TlsFiles:
    """Create ``directory/{ca.pem,server.pem,server.key}`` unless they already exist."""
    files = tls_files(directory)
    if files.ca_cert.exists() and files.cert.exists() and files.key.exists():
        return files
    return write_self_signed(directory, hosts or default_hosts(), organization="cdcsync upstream-sim", force=True)
