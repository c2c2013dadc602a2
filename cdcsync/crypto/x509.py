"""SM2 certificates and certificate requests (asn1crypto structures, SM2 signatures from sm2.py).

  CSR          PKCS#10, signed SM2-with-SM3 (1.2.156.10197.1.501). Subject:
               C=CN, O=<hospital name>, CN=<hospital name>, organizationIdentifier (2.5.4.97)=<org code>
  certificate  X.509 v3 with an SM2 subject key, signed SM2-with-SM3 by a CA certificate

The org code of a certificate is its subject's organizationIdentifier (X.520 2.5.4.97), the
attribute X.520 defines for an organisation's registered identifier (here the 医疗机构代码 /
统一社会信用代码); exactly one must be present.

SM2 user ID of certificate and CSR signatures. GB/T 35276 says 1234567812345678; the OpenSSL 3.0
command line (`req`, `x509 -req`, `ca`) signs and checks with an empty ID unless given
`-sigopt/-vfyopt distid:…`. A CA signature is therefore accepted under either ID (`CERT_UIDS`);
both are real SM2 signatures, neither is weaker. A CSR is signed with the empty ID by default so
that `openssl req -verify` and `openssl x509 -req` accept it without options; `uid=DEFAULT_UID`
makes one for a CA that follows GB/T 35276 (check it with `-vfyopt distid:1234567812345678`).

Validation (`validate_chain`) is deliberately small: a leaf, optional intermediates sent with
it, a set of trust anchors; names must chain, each signature must verify, every certificate on
the path must be inside its validity period, issuers must be CAs allowed to sign certificates,
the leaf must carry the key usages asked for. No CRL/OCSP (the platforms publish none to us).
"""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from asn1crypto import algos, core, csr, keys, pem, x509

from cdcsync.crypto import KeyFileError, SignatureError
from cdcsync.crypto.der import OID_SM2
from cdcsync.crypto.keys import key_id, public_key_der
from cdcsync.crypto.sm2 import DEFAULT_UID, SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.sm3 import sm3
from cdcsync.secrets import GROUP_OTHER_WRITE, loose_mode

OID_SM2_WITH_SM3 = "1.2.156.10197.1.501"
CERT_UIDS = (DEFAULT_UID, b"")  # GB/T 35276 first, then what the OpenSSL 3.0 CLI uses
MAX_CHAIN = 8
ORG_CODE_RE = re.compile(r"[A-Za-z0-9-]{1,64}")  # the shape of X-Org-Code (envelope.py)


class CertificateError(SignatureError):
    """A certificate is missing, malformed or not valid for its use. `code` names the reason
    (one per failure kind, so a platform's reply says exactly what is wrong)."""

    http_status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# Reason codes (docs/upstream-protocol.md, section 2.1).
MISSING = "certificate_missing"
MALFORMED = "certificate_malformed"
UNTRUSTED = "certificate_untrusted"
EXPIRED = "certificate_expired"
NOT_YET_VALID = "certificate_not_yet_valid"
KEY_USAGE = "certificate_key_usage"
ORG_MISMATCH = "certificate_org_mismatch"
KEY_MISMATCH = "certificate_key_mismatch"


@dataclass(frozen=True)
class Cert:
    """One parsed certificate with an SM2 subject key."""

    der: bytes
    asn1: x509.Certificate

    @classmethod
    def from_der(cls, der: bytes) -> Cert:
        try:
            c = x509.Certificate.load(der, strict=True)
            c.native  # noqa: B018 - parse everything now, not at first use
        except (ValueError, TypeError) as exc:
            raise CertificateError(MALFORMED, f"not an X.509 certificate: {exc}") from None
        cert = cls(der, c)
        cert.public_key  # noqa: B018 - refuse a non-SM2 certificate here
        return cert

    @cached_property
    def public_key(self) -> SM2PublicKey:
        spki = self.asn1.public_key
        if spki["algorithm"]["algorithm"].dotted != "1.2.840.10045.2.1" or (
            spki["algorithm"]["parameters"].chosen.dotted != OID_SM2
            if isinstance(spki["algorithm"]["parameters"].chosen, core.ObjectIdentifier) else True
        ):
            raise CertificateError(MALFORMED, f"certificate {self.subject_text}: subject key is not an SM2 key")
        try:
            return SM2PublicKey.from_bytes(bytes(spki["public_key"]))
        except ValueError as exc:
            raise CertificateError(MALFORMED, f"certificate {self.subject_text}: {exc}") from None

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @cached_property
    def fingerprint(self) -> str:
        """Lowercase hex SM3 of the DER certificate."""
        return sm3(self.der).hex()

    @property
    def subject_text(self) -> str:
        return self.asn1.subject.human_friendly

    @property
    def not_before(self) -> datetime:
        return self.asn1.not_valid_before

    @property
    def not_after(self) -> datetime:
        return self.asn1.not_valid_after

    @property
    def key_usage(self) -> frozenset[str]:
        ku = self.asn1.key_usage_value
        return frozenset() if ku is None else frozenset(ku.native)

    @property
    def is_ca(self) -> bool:
        bc = self.asn1.basic_constraints_value
        return bool(bc is not None and bc["ca"].native)

    @property
    def org_code(self) -> str | None:
        """The subject's organizationIdentifier, if exactly one."""
        values = [str(v) for k, v in _name_items(self.asn1.subject) if k == "organization_identifier"]
        return values[0] if len(values) == 1 else None

    def signed_by(self, issuer: SM2PublicKey) -> bool:
        if self.asn1["signature_algorithm"]["algorithm"].dotted != OID_SM2_WITH_SM3:
            return False
        tbs = self.asn1["tbs_certificate"].dump()
        sig = bytes(self.asn1["signature_value"])
        return any(issuer.is_valid_signature(sig, tbs, uid) for uid in CERT_UIDS)

    def pem(self) -> bytes:
        return pem.armor("CERTIFICATE", self.der)


def _name_items(name: x509.Name) -> Iterable[tuple[str, object]]:
    for rdn in name.chosen:
        for atv in rdn:
            yield atv["type"].native, atv["value"].native


# --------------------------------------------------------------------------- files


def parse_certificates(data: bytes, source: str) -> list[Cert]:
    """Every certificate in PEM text (or one DER certificate); at least one."""
    if pem.detect(data):
        try:
            blocks = [(t, der) for t, _h, der in pem.unarmor(data, multiple=True)]
        except ValueError as exc:
            raise CertificateError(MALFORMED, f"{source}: bad PEM: {exc}") from None
        certs = [Cert.from_der(der) for t, der in blocks if t == "CERTIFICATE"]
    else:
        certs = [Cert.from_der(data)]
    if not certs:
        raise CertificateError(MISSING, f"{source}: no -----BEGIN CERTIFICATE----- block")
    return certs


def check_trust_file_permissions(path: Path) -> None:
    """Refuse a trust file (certificate, CA bundle, public key) that group or others may
    write: whoever can replace it can make cdcsync trust their key."""
    try:
        mode = loose_mode(path, GROUP_OTHER_WRITE)
    except OSError:
        return  # reported by the read that follows
    if mode is not None:
        raise KeyFileError(
            f"{path}: 信任文件（证书/CA 证书/公钥）权限 {stat.S_IMODE(mode):04o} 允许属组或其他用户写入，拒绝使用；"
            f"请执行 chmod 644 {path}"
        )


def load_certificates(path: str | os.PathLike[str], what: str = "证书") -> list[Cert]:
    """The certificates of a PEM file, after the trust-file permission check."""
    p = Path(path)
    check_trust_file_permissions(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{p}: 找不到{what}文件") from None
    except OSError as exc:
        raise KeyFileError(f"{p}: 无法读取{what}文件（{exc.strerror}）") from None
    try:
        return parse_certificates(data, str(p))
    except CertificateError as exc:
        raise KeyFileError(f"{p}: 不是可用的 SM2 {what}（期望 PEM 格式 X.509 证书）：{exc}") from None


def encode_chain_header(chain: Sequence[Cert]) -> str:
    """X-Certificate: base64 DER certificates, leaf first, comma-separated."""
    return ",".join(base64.b64encode(c.der).decode() for c in chain)


def decode_chain_header(value: str) -> list[Cert]:
    parts = [p.strip() for p in value.split(",")]
    if not parts or len(parts) > MAX_CHAIN or not all(parts):
        raise CertificateError(MALFORMED, f"X-Certificate: expected 1-{MAX_CHAIN} comma-separated base64 certificates")
    try:
        ders = [base64.b64decode(p, validate=True) for p in parts]
    except ValueError:
        raise CertificateError(MALFORMED, "X-Certificate: not valid base64") from None
    return [Cert.from_der(d) for d in ders]


# --------------------------------------------------------------------------- validation


def _find_issuer(cert: Cert, candidates: Iterable[Cert]) -> Cert | None:
    for c in candidates:
        if c.asn1.subject == cert.asn1.issuer and cert.signed_by(c.public_key):
            return c
    return None


def _check_issuer(issuer: Cert) -> None:
    ku = issuer.asn1.key_usage_value
    if not issuer.is_ca or (ku is not None and "key_cert_sign" not in ku.native):
        raise CertificateError(UNTRUSTED, f"issuer {issuer.subject_text} is not a CA allowed to sign certificates")


def _check_time(cert: Cert, at: datetime, role: str) -> None:
    if at < cert.not_before:
        raise CertificateError(NOT_YET_VALID, f"{role} certificate {cert.subject_text} is not valid before "
                                              f"{cert.not_before.isoformat()}")
    if at > cert.not_after:
        raise CertificateError(EXPIRED, f"{role} certificate {cert.subject_text} expired at "
                                        f"{cert.not_after.isoformat()}")


def check_validity(path: Sequence[Cert], at: datetime) -> None:
    """Every certificate of a validated path (leaf first) is inside its validity period."""
    for i, c in enumerate(path):
        _check_time(c, at, "the" if i == 0 else "CA")


def validate_chain(
    leaf: Cert,
    anchors: Sequence[Cert],
    *,
    intermediates: Sequence[Cert] = (),
    key_usage: Iterable[str] = ("digital_signature",),
    at: datetime | None = None,
    check_time: bool = True,
) -> list[Cert]:
    """Check `leaf` chains to one of `anchors` (through `intermediates`), every certificate on
    the path is valid at `at` (unless not `check_time`: the caller checks at each use), issuers
    are CAs, and the leaf has every usage in `key_usage`.
    Returns the path (leaf first, anchor last); raises CertificateError with the reason."""
    at = at or datetime.now(UTC)
    path = [leaf]
    cur = leaf
    while True:
        anchor = _find_issuer(cur, anchors)
        if anchor is not None:
            _check_issuer(anchor)
            path.append(anchor)
            break
        nxt = _find_issuer(cur, [c for c in intermediates if c not in path])
        if nxt is None or len(path) >= MAX_CHAIN:
            issuer = leaf.asn1.issuer.human_friendly
            raise CertificateError(UNTRUSTED, f"certificate {leaf.subject_text} (issuer {issuer}) "
                                              "is not issued by a configured CA")
        _check_issuer(nxt)
        path.append(nxt)
        cur = nxt
    if check_time:
        check_validity(path, at)
    missing = [u for u in key_usage if u not in leaf.key_usage]
    if missing:
        have = ", ".join(sorted(leaf.key_usage)) or "none"
        raise CertificateError(KEY_USAGE, f"certificate {leaf.subject_text} lacks key usage {', '.join(missing)} "
                                          f"(has: {have})")
    return path


# --------------------------------------------------------------------------- CSR


def build_csr(key: SM2PrivateKey, *, org_code: str, name: str, uid: bytes = b"") -> bytes:
    """A DER PKCS#10 request for `key` (see the module docstring for subject and user ID)."""
    if not ORG_CODE_RE.fullmatch(org_code):
        raise ValueError(f"org code must be 1-64 characters [A-Za-z0-9-], got {org_code[:80]!r}")
    if not 0 < len(name) <= 64:
        raise ValueError("name must be 1-64 characters")
    subject = x509.Name.build(
        {"country_name": "CN", "organization_name": name, "common_name": name, "organization_identifier": org_code},
        use_printable=False,
    )
    info = csr.CertificationRequestInfo({
        "version": "v1",
        "subject": subject,
        "subject_pk_info": keys.PublicKeyInfo.load(public_key_der(key.public_key)),
        "attributes": [],
    })
    sig = key.sign(info.dump(), uid)
    req = csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": OID_SM2_WITH_SM3}),
        "signature": sig,
    })
    return req.dump()


def csr_pem(der: bytes) -> bytes:
    return pem.armor("CERTIFICATE REQUEST", der)
