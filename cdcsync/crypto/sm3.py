"""SM3 (GB/T 32905) through `cryptography`/OpenSSL.

gmssl's pure-Python SM3 is ~1000x slower; it must never be used on the data path.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

DIGEST_SIZE = 32


def sm3(*parts: bytes) -> bytes:
    """SM3 digest of the concatenation of `parts` (no copy of the joined data)."""
    h = hashes.Hash(hashes.SM3())
    for p in parts:
        h.update(p)
    return h.finalize()


def sm3_hex(*parts: bytes) -> str:
    return sm3(*parts).hex()


def hmac_sm3(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SM3 (GB/T 15852.2 style HMAC over SM3)."""
    h = hmac.HMAC(key, hashes.SM3())
    for p in parts:
        h.update(p)
    return h.finalize()


def kdf(z: bytes, length: int) -> bytes:
    """The SM2 key derivation function (GB/T 32918.4 §5.4.3): SM3(Z || ct) for ct = 1, 2, ..."""
    out = bytearray()
    ct = 1
    while len(out) < length:
        out += sm3(z, ct.to_bytes(4, "big"))
        ct += 1
    return bytes(out[:length])
