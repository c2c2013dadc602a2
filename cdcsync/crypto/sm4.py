"""SM4-GCM (GB/T 32907 block cipher, GCM mode as in RFC 8998) through `cryptography`/OpenSSL.

The `cryptography` wheel bundles an OpenSSL that provides SM4 in GCM mode, so no
CTR+HMAC fallback is needed; `sm4_ecb_block` exists only for the published test vector.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cdcsync.crypto import DecryptError

KEY_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"SM4 key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"SM4-GCM nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")


def encrypt_gcm(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Return ciphertext || 16-byte tag. A (key, nonce) pair must never be reused."""
    _check(key, nonce)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return ct + enc.tag


def decrypt_gcm(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """Inverse of `encrypt_gcm`; raises DecryptError if the tag does not verify."""
    _check(key, nonce)
    if len(data) < TAG_SIZE:
        raise DecryptError("SM4-GCM ciphertext shorter than its tag")
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-TAG_SIZE:])).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    try:
        return dec.update(data[:-TAG_SIZE]) + dec.finalize()
    except InvalidTag:
        raise DecryptError("SM4-GCM authentication tag mismatch (wrong key or tampered data)") from None


def sm4_ecb_block(key: bytes, block: bytes) -> bytes:
    """Encrypt one 16-byte block with raw SM4 (test vectors only; ECB is never used for data)."""
    if len(key) != KEY_SIZE or len(block) != 16:
        raise ValueError("SM4 key and block must be 16 bytes")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()
