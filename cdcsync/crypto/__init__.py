"""National cryptography (SM2/SM3/SM4) and the digital envelope for upstream delivery.

Beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: ``sink/http`` seals every
platform batch with it; the reference platform, backups and the CLI's ``keys`` use it too.

Modules:
  sm3       SM3 hash, HMAC-SM3, SM2 KDF (OpenSSL through `cryptography`)
  sm4       SM4-GCM (OpenSSL through `cryptography`)
  sm2       SM2 keys, SM3-with-SM2 signatures, SM2 public-key encryption (system OpenSSL 3
            through `sm2_openssl` when it loads, GIL released; else Python ints)
  der       minimal strict DER, SM2 SubjectPublicKeyInfo / PKCS#8 structures (used by sm2 and keys)
  keys      PEM (PKCS#8 / SubjectPublicKeyInfo) files, key ids, file permissions
  x509      SM2 certificates and CSRs (asn1crypto), chain validation, trust-file permissions
  tls       self-signed TLS material (throw-away CA + server certificate) for first starts
  sm2_openssl, sm2_backend  the libcrypto binding and the backend switch
  envelope  the wire format of docs/upstream-protocol.md: seal/open a batch, sign/verify replies
  cli       the `cdcsync keys` click group

The exception hierarchy lives here so that every submodule can raise it without import cycles.
Each exception carries the machine-readable `code` and HTTP status the reference platform answers with.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by cdcsync.crypto."""

    code = "crypto_error"
    http_status = 400


class SignatureError(CryptoError):
    """A signature is malformed or does not verify, or the signer's key is unknown."""

    code = "bad_signature"
    http_status = 401


class UnknownKeyError(SignatureError):
    """X-Key-Id names no key the receiver knows."""

    code = "unknown_key"
    http_status = 401


class OrgMismatchError(SignatureError):
    """The signing key is registered for a different org code than X-Org-Code."""

    code = "org_mismatch"
    http_status = 403


class DecryptError(CryptoError):
    """The SM2-wrapped key or the SM4-GCM ciphertext cannot be decrypted/authenticated."""

    code = "decrypt_failed"
    http_status = 422


class EnvelopeError(CryptoError):
    """The request/reply is malformed: missing header, bad framing, bad gzip, too large."""

    code = "malformed_envelope"
    http_status = 400


class UnsupportedVersionError(EnvelopeError):
    code = "unsupported_version"
    http_status = 415


class PayloadTooLargeError(EnvelopeError):
    code = "payload_too_large"
    http_status = 413


class ExpiredError(EnvelopeError):
    """X-Timestamp lies outside the accepted window."""

    code = "expired"
    http_status = 401


class ReplayError(EnvelopeError):
    """This exact signed request (key id, batch id, timestamp) was seen before."""

    code = "replay"
    http_status = 409


class KeyFileError(CryptoError):
    """A key file is missing, unreadable, malformed, or has unsafe permissions."""

    code = "key_file"
    http_status = 500


__all__ = [
    "CryptoError",
    "DecryptError",
    "EnvelopeError",
    "ExpiredError",
    "KeyFileError",
    "OrgMismatchError",
    "PayloadTooLargeError",
    "ReplayError",
    "SignatureError",
    "UnknownKeyError",
    "UnsupportedVersionError",
]
