"""Hospital certificates on the platform side (docs/upstream-protocol.md, section 2.1).

With CA certificates configured (``--ca-cert``), a request is attributed to a hospital by the
certificate it carries in ``X-Certificate``: it must chain to one of those CAs, be inside its
validity period, allow ``digitalSignature``, name ``X-Org-Code`` as its subject's
organizationIdentifier, and hold the key named by ``X-Key-Id``; the request's signature is then
verified with that key. A registered bare key (``trusted/*.pub``) still works without a
certificate only when ``--allow-bare-keys`` is given (a platform moving to certificates).
Without CA certificates the platform works with registered bare keys only, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cdcsync.crypto.envelope import H_CERT, H_KEY_ID, H_ORG, SenderKey, SenderLookup
from cdcsync.crypto.x509 import (
    KEY_MISMATCH,
    MISSING,
    ORG_MISMATCH,
    Cert,
    CertificateError,
    check_validity,
    decode_chain_header,
    load_certificates,
    validate_chain,
)

_CACHE_MAX = 1024


class HospitalCertPolicy:
    """Validates the hospital certificate of each request; validated chains are cached by their
    header text (the validity period is still checked at every use)."""

    def __init__(self, ca_certs: Sequence[Cert], *, allow_bare_keys: bool = False) -> None:
        if not ca_certs:
            raise ValueError("HospitalCertPolicy needs at least one CA certificate")
        self.ca_certs = list(ca_certs)
        self.allow_bare_keys = allow_bare_keys
        self._cache: dict[str, list[Cert]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_files(cls, files: Iterable[Path], *, allow_bare_keys: bool = False) -> HospitalCertPolicy:
        return cls([c for f in files for c in load_certificates(f, "CA 证书")], allow_bare_keys=allow_bare_keys)

    def _path(self, header: str, at: datetime) -> list[Cert]:
        with self._lock:
            path = self._cache.get(header)
        if path is not None:
            check_validity(path, at)  # same chain as before: only time can have changed its verdict
            return path
        chain = decode_chain_header(header)
        path = validate_chain(chain[0], self.ca_certs, intermediates=chain[1:], at=at)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[header] = path
        return path

    def senders(self, headers: Mapping[str, str], bare: SenderLookup, at: datetime | None = None) -> SenderLookup:
        """The sender-key lookup for this request; raises CertificateError (401) with the reason."""
        low = {k.lower(): v for k, v in headers.items()}
        org, kid = low.get(H_ORG.lower(), ""), low.get(H_KEY_ID.lower(), "")
        if not org or not kid:
            return {}  # the envelope check reports the missing header
        raw = low.get(H_CERT.lower())
        if not raw:
            if self.allow_bare_keys:
                return bare
            raise CertificateError(MISSING, f"this platform accepts only keys certified by its CA: send the hospital "
                                            f"certificate in {H_CERT}")
        leaf = self._path(raw, at or datetime.now(UTC))[0]
        if leaf.org_code != org:
            raise CertificateError(ORG_MISMATCH, f"certificate {leaf.subject_text} is issued to org code "
                                                 f"{leaf.org_code or '(none)'}, not {org}")
        if leaf.key_id != kid:
            raise CertificateError(KEY_MISMATCH, f"certificate {leaf.subject_text} holds key {leaf.key_id[:16]}..., "
                                                 f"not {H_KEY_ID} {kid[:16]}...")
        return {kid: SenderKey(leaf.public_key, org)}
