"""SM2 sign/verify/encrypt/decrypt through the system OpenSSL 3 libcrypto (ctypes).

Why: the pure-Python SM2 in `sm2` holds the GIL for 0.3-0.6 ms per operation, and the delivery
threads sign, encrypt and verify once per batch while the replication stream needs the GIL.
The calls that do the elliptic-curve work release the GIL (ctypes.CDLL), so it runs beside the
stream; the microsecond bookkeeping calls keep it (see `_Lib` for why).

Formats are those of `sm2` (byte-identical DER): SM3-with-SM2 signature SEQUENCE { r, s } with the
user ID set by `EVP_PKEY_CTX_set1_id`, ciphertext SM2Cipher SEQUENCE { x, y, C3, C2 }.

Loading is checked: libcrypto >= 3.0, keys decode as "SM2" EVP_PKEYs, and a self-test (the GB/T
32918.5 signature vector, a fixed Python-made ciphertext, a sign/verify and encrypt/decrypt round
trip) passes. Otherwise `BACKEND` is None, `REASON` says why, and `sm2` keeps its Python code.
`CDCSYNC_PURE_PYTHON` (any non-empty value) forces that fallback, as for the C tuple parser.

Every OpenSSL object is freed: contexts in `finally`, EVP_PKEYs by a finalizer on `PKey`. A failed
verify/decrypt raises SignatureError/DecryptError with the thread's OpenSSL error queue cleared.
Strict input parsing (one accepted DER encoding per signature) stays in `sm2`, which re-encodes
what it accepted before calling in here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import weakref
from ctypes import POINTER, byref, c_char_p, c_int, c_long, c_size_t, c_ulong, c_void_p
from typing import Any

from cdcsync.crypto import CryptoError, DecryptError, SignatureError

MIN_VERSION = 0x30000000  # OpenSSL 3.0.0: SM2 as its own key type, SM2Cipher DER from EVP_PKEY_encrypt
_MAX_SIG = 80  # DER SEQUENCE of two 33-byte INTEGERs is at most 72 bytes


# Messages up to this size are hashed with the GIL held (~50 µs of SM3 at most).
_NOGIL_UPDATE = 16 * 1024


class _Lib:
    """The libcrypto functions used here, with argument/return types declared.

    Attributes ending in `_nogil` (the elliptic-curve work, key decoding, long hashes) release
    the GIL (ctypes.CDLL); the rest are microsecond calls that keep it (ctypes.PyDLL). Why not
    release it everywhere: each return from a releasing call must re-take the GIL, which waits
    up to sys.getswitchinterval() (5 ms) while a CPU-bound thread (the replication stream) runs;
    one release per operation bounds that wait to one interval.
    """

    def __init__(self, name: str) -> None:
        nogil, gil = ctypes.CDLL(name), ctypes.PyDLL(name)  # one dlopen handle, two calling modes

        def fn(symbol: str, restype: Any, *argtypes: Any) -> Any:
            lib = nogil if symbol.endswith("_nogil") else gil
            f = lib[symbol.removesuffix("_nogil")]  # a new function object per lookup
            f.restype = restype
            f.argtypes = argtypes
            return f

        pp = POINTER(c_void_p)
        sign_update = (c_int, c_void_p, c_void_p, c_size_t)
        crypt = (c_int, c_void_p, c_void_p, POINTER(c_size_t), c_void_p, c_size_t)
        self.OpenSSL_version_num = fn("OpenSSL_version_num", c_ulong)
        self.ERR_get_error = fn("ERR_get_error", c_ulong)
        self.ERR_error_string_n = fn("ERR_error_string_n", None, c_ulong, c_char_p, c_size_t)
        self.ERR_clear_error = fn("ERR_clear_error", None)
        self.d2i_AutoPrivateKey_nogil = fn("d2i_AutoPrivateKey_nogil", c_void_p, c_void_p, pp, c_long)
        self.d2i_PUBKEY_nogil = fn("d2i_PUBKEY_nogil", c_void_p, c_void_p, pp, c_long)
        self.EVP_PKEY_is_a = fn("EVP_PKEY_is_a", c_int, c_void_p, c_char_p)
        self.EVP_PKEY_free = fn("EVP_PKEY_free", None, c_void_p)
        self.EVP_sm3 = fn("EVP_sm3", c_void_p)
        self.EVP_MD_CTX_new = fn("EVP_MD_CTX_new", c_void_p)
        self.EVP_MD_CTX_free = fn("EVP_MD_CTX_free", None, c_void_p)
        self.EVP_PKEY_CTX_new = fn("EVP_PKEY_CTX_new", c_void_p, c_void_p, c_void_p)
        self.EVP_PKEY_CTX_free = fn("EVP_PKEY_CTX_free", None, c_void_p)
        self.EVP_PKEY_CTX_set1_id = fn("EVP_PKEY_CTX_set1_id", c_int, c_void_p, c_void_p, c_int)
        self.EVP_DigestSignInit = fn("EVP_DigestSignInit", c_int, c_void_p, pp, c_void_p, c_void_p, c_void_p)
        self.EVP_DigestSignUpdate = fn("EVP_DigestSignUpdate", *sign_update)
        self.EVP_DigestSignUpdate_nogil = fn("EVP_DigestSignUpdate_nogil", *sign_update)
        self.EVP_DigestSignFinal_nogil = fn("EVP_DigestSignFinal_nogil", c_int, c_void_p, c_void_p, POINTER(c_size_t))
        self.EVP_DigestVerifyInit = fn("EVP_DigestVerifyInit", c_int, c_void_p, pp, c_void_p, c_void_p, c_void_p)
        self.EVP_DigestVerifyUpdate = fn("EVP_DigestVerifyUpdate", *sign_update)
        self.EVP_DigestVerifyUpdate_nogil = fn("EVP_DigestVerifyUpdate_nogil", *sign_update)
        self.EVP_DigestVerifyFinal_nogil = fn("EVP_DigestVerifyFinal_nogil", c_int, c_void_p, c_void_p, c_size_t)
        self.EVP_PKEY_encrypt_init = fn("EVP_PKEY_encrypt_init", c_int, c_void_p)
        self.EVP_PKEY_encrypt = fn("EVP_PKEY_encrypt", *crypt)  # size query only
        self.EVP_PKEY_encrypt_nogil = fn("EVP_PKEY_encrypt_nogil", *crypt)
        self.EVP_PKEY_decrypt_init = fn("EVP_PKEY_decrypt_init", c_int, c_void_p)
        self.EVP_PKEY_decrypt = fn("EVP_PKEY_decrypt", *crypt)  # size query only
        self.EVP_PKEY_decrypt_nogil = fn("EVP_PKEY_decrypt_nogil", *crypt)


def _find_libcrypto() -> _Lib:
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    lib = _Lib(name)
    version = lib.OpenSSL_version_num()
    if version < MIN_VERSION:
        raise OSError(f"{name} is OpenSSL {version:#x}, SM2 needs >= 3.0")
    return lib


class PKey:
    """Owns one EVP_PKEY*; freed when the last Python reference goes (never at interpreter exit,
    where a daemon thread might still be inside OpenSSL with it)."""

    __slots__ = ("ptr", "private", "__weakref__")

    def __init__(self, lib: _Lib, ptr: int, *, private: bool) -> None:
        self.ptr = ptr
        self.private = private
        weakref.finalize(self, lib.EVP_PKEY_free, ptr).atexit = False


class OpenSSLSM2:
    """The four SM2 operations on EVP_PKEYs. Thread-safe: an EVP_PKEY is only read, and every
    call makes its own contexts."""

    def __init__(self, lib: _Lib) -> None:
        self._lib = lib
        self._sm3 = lib.EVP_sm3()
        if not self._sm3:
            raise OSError("libcrypto has no SM3")

    # ------------------------------------------------------------------ helpers

    def _error(self, what: str) -> str:
        """`what` plus OpenSSL's first queued reason; clears this thread's error queue."""
        code = self._lib.ERR_get_error()
        self._lib.ERR_clear_error()
        if not code:
            return what
        buf = ctypes.create_string_buffer(256)
        self._lib.ERR_error_string_n(code, buf, len(buf))
        return f"{what} ({buf.value.decode(errors='replace')})"

    def _load(self, der: bytes, *, private: bool) -> PKey:
        buf = ctypes.create_string_buffer(der, len(der))
        p = c_void_p(ctypes.addressof(buf))
        d2i = self._lib.d2i_AutoPrivateKey_nogil if private else self._lib.d2i_PUBKEY_nogil
        ptr = d2i(None, byref(p), len(der))
        ctypes.memset(buf, 0, len(der))  # one copy fewer of a private scalar in memory
        if not ptr:
            raise CryptoError(self._error("OpenSSL cannot load the SM2 key"))
        key = PKey(self._lib, ptr, private=private)  # owns ptr from here on
        # OpenSSL 3 decoders leave errors from the formats they tried, even on success.
        self._lib.ERR_clear_error()
        if self._lib.EVP_PKEY_is_a(ptr, b"SM2") != 1:
            raise CryptoError("OpenSSL did not load the key as an SM2 key")
        return key

    def load_private(self, pkcs8_der: bytes) -> PKey:
        """An EVP_PKEY from a PKCS#8 PrivateKeyInfo (der.pkcs8_private_key_der)."""
        return self._load(pkcs8_der, private=True)

    def load_public(self, spki_der: bytes) -> PKey:
        """An EVP_PKEY from a SubjectPublicKeyInfo (der.spki_der)."""
        return self._load(spki_der, private=False)

    # ------------------------------------------------------------------ operations

    def sign(self, key: PKey, message: bytes, uid: bytes) -> bytes:
        """DER SM3-with-SM2 signature of `message` with user ID `uid`."""
        lib = self._lib
        mctx = lib.EVP_MD_CTX_new()
        if not mctx:
            raise MemoryError("EVP_MD_CTX_new")
        try:
            pctx = c_void_p()  # owned by mctx
            siglen = c_size_t(_MAX_SIG)
            sig = ctypes.create_string_buffer(_MAX_SIG)
            update = lib.EVP_DigestSignUpdate_nogil if len(message) > _NOGIL_UPDATE else lib.EVP_DigestSignUpdate
            if (
                lib.EVP_DigestSignInit(mctx, byref(pctx), self._sm3, None, key.ptr) != 1
                or lib.EVP_PKEY_CTX_set1_id(pctx, uid, len(uid)) != 1
                # Z_A is hashed on the first update; an empty message still needs one.
                or update(mctx, message, len(message)) != 1
                or lib.EVP_DigestSignFinal_nogil(mctx, sig, byref(siglen)) != 1
            ):
                raise CryptoError(self._error("OpenSSL SM2 signing failed"))
            return sig.raw[: siglen.value]
        finally:
            lib.EVP_MD_CTX_free(mctx)

    def verify(self, key: PKey, signature: bytes, message: bytes, uid: bytes) -> None:
        """Raise SignatureError unless `signature` is valid for `message` under `key`."""
        lib = self._lib
        mctx = lib.EVP_MD_CTX_new()
        if not mctx:
            raise MemoryError("EVP_MD_CTX_new")
        try:
            pctx = c_void_p()
            update = lib.EVP_DigestVerifyUpdate_nogil if len(message) > _NOGIL_UPDATE else lib.EVP_DigestVerifyUpdate
            if (
                lib.EVP_DigestVerifyInit(mctx, byref(pctx), self._sm3, None, key.ptr) != 1
                or lib.EVP_PKEY_CTX_set1_id(pctx, uid, len(uid)) != 1
                or update(mctx, message, len(message)) != 1
            ):
                # Callers treat every verify failure alike (HTTP 401); the reason goes in the text.
                raise SignatureError(self._error("OpenSSL could not run SM2 verification"))
            if lib.EVP_DigestVerifyFinal_nogil(mctx, signature, len(signature)) != 1:
                lib.ERR_clear_error()
                raise SignatureError("SM2 signature does not verify")
        finally:
            lib.EVP_MD_CTX_free(mctx)

    def _crypt(self, key: PKey, data: bytes, *, encrypt: bool) -> bytes:
        lib = self._lib
        init, size, op = (
            (lib.EVP_PKEY_encrypt_init, lib.EVP_PKEY_encrypt, lib.EVP_PKEY_encrypt_nogil)
            if encrypt
            else (lib.EVP_PKEY_decrypt_init, lib.EVP_PKEY_decrypt, lib.EVP_PKEY_decrypt_nogil)
        )
        ctx = lib.EVP_PKEY_CTX_new(key.ptr, None)
        if not ctx:
            raise MemoryError("EVP_PKEY_CTX_new")
        try:
            outlen = c_size_t(0)
            if init(ctx) != 1 or size(ctx, None, byref(outlen), data, len(data)) != 1:
                raise self._crypt_error(encrypt)
            out = ctypes.create_string_buffer(outlen.value)
            if op(ctx, out, byref(outlen), data, len(data)) != 1:
                raise self._crypt_error(encrypt)
            return out.raw[: outlen.value]
        finally:
            lib.EVP_PKEY_CTX_free(ctx)

    def _crypt_error(self, encrypt: bool) -> CryptoError:
        if encrypt:
            return CryptoError(self._error("OpenSSL SM2 encryption failed"))
        self._lib.ERR_clear_error()  # the reason would tell an attacker which check failed
        return DecryptError("SM2 ciphertext does not decrypt under this key")

    def encrypt(self, key: PKey, plaintext: bytes) -> bytes:
        """DER SM2Cipher (C1, C3, C2) of a non-empty `plaintext`."""
        return self._crypt(key, plaintext, encrypt=True)

    def decrypt(self, key: PKey, ciphertext: bytes) -> bytes:
        """Plaintext of a DER SM2Cipher; DecryptError if it does not decrypt under `key`."""
        return self._crypt(key, ciphertext, encrypt=False)


# --------------------------------------------------------------------------- self-test
# The GB/T 32918.5 example key (d = 3945208F...), its public key, the standard's signature of
# "message digest" (default user ID) and a ciphertext made by the Python code under that key.
_TEST_PKCS8 = bytes.fromhex(
    "308187020100301306072a8648ce3d020106082a811ccf5501822d046d306b02010104203945208f7b2144b13f36e38a"
    "c6d39f95889393692860b51a42fb81ef4df7c5b8a1440342000409f9df311e5421a150dd7d161e4bc5c672179fad1833"
    "fc076bb08ff356f35020ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
)
_TEST_SPKI = bytes.fromhex(
    "3059301306072a8648ce3d020106082a811ccf5501822d0342000409f9df311e5421a150dd7d161e4bc5c672179fad18"
    "33fc076bb08ff356f35020ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
)
_TEST_SIG = bytes.fromhex(
    "3046022100f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3022100b1b6aa29df212fd8"
    "763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa"
)
_TEST_PLAIN = b"cdcsync openssl self-test"
_TEST_CIPHER = bytes.fromhex(
    "30818202207451429df46da17dcae8fd4945665e1e1be95e084db38d18b5e540d8afa77c59022100a44ec4c21372f8d3"
    "d9e0eb2920b5c9893509cfeea66d0bc67ac4909ff779f73d0420aa2936aec184134029af15e96fa40d00d74d9792fa88"
    "d2f03186395bb86ded800419a7e9eb89410a6a6724632582f9b1f76097b0a9a3112acd70a9"
)
_DEFAULT_UID = b"1234567812345678"


def _self_test(be: OpenSSLSM2) -> None:
    priv = be.load_private(_TEST_PKCS8)
    pub = be.load_public(_TEST_SPKI)
    be.verify(pub, _TEST_SIG, b"message digest", _DEFAULT_UID)
    try:
        be.verify(pub, _TEST_SIG, b"message digest!", _DEFAULT_UID)
    except SignatureError:
        pass
    else:
        raise CryptoError("self-test: a wrong message verified")
    sig = be.sign(priv, _TEST_PLAIN, _DEFAULT_UID)
    be.verify(pub, sig, _TEST_PLAIN, _DEFAULT_UID)
    if be.decrypt(priv, _TEST_CIPHER) != _TEST_PLAIN:
        raise CryptoError("self-test: fixed ciphertext decrypted wrongly")
    ct = be.encrypt(pub, _TEST_PLAIN)
    if ct[:1] != b"\x30" or be.decrypt(priv, ct) != _TEST_PLAIN:
        raise CryptoError("self-test: encrypt/decrypt round trip failed")


def _init() -> tuple[OpenSSLSM2 | None, str]:
    if os.environ.get("CDCSYNC_PURE_PYTHON"):
        return None, "CDCSYNC_PURE_PYTHON is set"
    try:
        be = OpenSSLSM2(_find_libcrypto())
        _self_test(be)
    except (OSError, AttributeError, CryptoError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return be, ""


BACKEND, REASON = _init()
"""The OpenSSL backend, or None (then REASON says why and the Python code is used)."""
