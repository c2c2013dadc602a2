"""SM2 (GB/T 32918) signatures and public-key encryption: OpenSSL 3 when available, else Python.

The four operations (sign, verify, encrypt, decrypt) go to the system libcrypto through
`sm2_openssl` when it loads and passes its self-test: a ctypes call releases the GIL, which the
replication stream needs. Otherwise (or with CDCSYNC_PURE_PYTHON set) the plain-Python code
below does the work; it is also the reference the tests hold OpenSSL to. Input parsing (strict
DER, range and on-curve checks) is always this module's, so both paths refuse the same bytes.

Why not gmssl's `CryptSM2`: it draws signing nonces from `random.choice` (not a CSPRNG, so
the private key can leak), strips the public key with `lstrip("04")` (corrupts keys whose x
starts with a 0 or 4 nibble), never checks C3 on decryption, and parses hex strings at every
field operation. The equations below are the standard's; SM3 is the fast OpenSSL one.
gmssl remains a cross-check in the tests.

Formats (all interoperable with OpenSSL 3):
  signature   DER SEQUENCE { r INTEGER, s INTEGER }                       (GB/T 35276 §7.3)
  ciphertext  DER SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING(32),
                             ciphertext OCTET STRING }  i.e. C1 C3 C2      (GB/T 35276 §7.2)
  user ID     "1234567812345678" unless given                             (GB/T 35276 §10)

The Python path is not constant-time: Python integers leak timing (OpenSSL multiplies secret
scalars with its Montgomery ladder). The key lives on a dedicated front-end server and is used
once per batch; a local timing attacker is outside this threat model.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Literal

from cdcsync.crypto import DecryptError, SignatureError
from cdcsync.crypto.der import (
    DerError,
    der_int,
    der_items,
    der_octets,
    der_parse_int,
    der_parse_one,
    der_seq,
    pkcs8_private_key_der,
    spki_der,
)
from cdcsync.crypto.sm3 import kdf, sm3

if TYPE_CHECKING:
    from cdcsync.crypto.sm2_openssl import OpenSSLSM2, PKey

# Curve parameters (GB/T 32918.5, the recommended 256-bit curve).
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_UID = b"1234567812345678"


# --------------------------------------------------------------------------- backend choice

_openssl_backend: OpenSSLSM2 | None = None
_backend_chosen = False


def _openssl() -> OpenSSLSM2 | None:
    """The OpenSSL backend if in use, loaded on first use (it opens libcrypto)."""
    global _openssl_backend, _backend_chosen
    if not _backend_chosen:
        from cdcsync.crypto import sm2_openssl

        _openssl_backend = sm2_openssl.BACKEND
        _backend_chosen = True
    return _openssl_backend


def backend() -> Literal["openssl", "python"]:
    """Which implementation SM2 operations use in this process."""
    return "python" if _openssl() is None else "openssl"


def set_backend(name: Literal["auto", "openssl", "python"]) -> None:
    """Choose the implementation (tests and benchmarks; not while other threads use keys).
    "auto" is the default: OpenSSL if it loaded and CDCSYNC_PURE_PYTHON is unset."""
    global _openssl_backend, _backend_chosen
    from cdcsync.crypto import sm2_openssl

    if name not in ("auto", "openssl", "python"):
        raise ValueError(f"unknown SM2 backend {name!r}")
    if name == "openssl" and sm2_openssl.BACKEND is None:
        raise RuntimeError(f"OpenSSL SM2 backend unavailable: {sm2_openssl.REASON}")
    _openssl_backend = None if name == "python" else sm2_openssl.BACKEND
    _backend_chosen = True


def _check_uid(uid: bytes) -> None:
    if len(uid) * 8 > 0xFFFF:
        raise ValueError("SM2 user ID too long")


Jac = tuple[int, int, int]  # Jacobian (X, Y, Z); Z == 0 is the point at infinity
Aff = tuple[int, int]
_INF: Jac = (1, 1, 0)


# --------------------------------------------------------------------------- field / group


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def _dbl(p1: Jac) -> Jac:
    # dbl-2001-b, valid because a = -3.
    x1, y1, z1 = p1
    if z1 == 0 or y1 == 0:
        return _INF
    delta = z1 * z1 % P
    gamma = y1 * y1 % P
    beta = x1 * gamma % P
    alpha = 3 * (x1 - delta) * (x1 + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y1 + z1) * (y1 + z1) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return (x3, y3, z3)


def _madd(p1: Jac, q: Aff) -> Jac:
    # madd-2007-bl: Jacobian + affine.
    x1, y1, z1 = p1
    x2, y2 = q
    if z1 == 0:
        return (x2, y2, 1)
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - x1) % P
    r = 2 * (s2 - y1) % P
    if h == 0:
        return _dbl(p1) if r == 0 else _INF
    hh = h * h % P
    i = 4 * hh % P
    j = h * i % P
    v = x1 * i % P
    x3 = (r * r - j - 2 * v) % P
    y3 = (r * (v - x3) - 2 * y1 * j) % P
    z3 = ((z1 + h) * (z1 + h) - z1z1 - hh) % P
    return (x3, y3, z3)


def _to_affine(p1: Jac) -> Aff | None:
    x, y, z = p1
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return (x * zi2 % P, y * zi2 * zi % P)


def _batch_affine(points: list[Jac]) -> list[Aff]:
    """Montgomery's trick: one inversion for the whole list (no point may be infinity)."""
    acc = [1] * (len(points) + 1)
    for i, (_, _, z) in enumerate(points):
        acc[i + 1] = acc[i] * z % P
    inv = pow(acc[-1], -1, P)
    out: list[Aff] = [(0, 0)] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z = points[i]
        zi = inv * acc[i] % P
        inv = inv * z % P
        zi2 = zi * zi % P
        out[i] = (x * zi2 % P, y * zi2 * zi % P)
    return out


# Fixed-base comb: _comb[i][j] = j * 16**i * base, affine. 64 windows x 15 entries; a scalar
# multiplication is then <= 64 mixed additions and no doublings.
_W = 4
_WINDOWS = 256 // _W


def _comb_table(base: Aff) -> list[list[Aff]]:
    jac: list[Jac] = []
    b: Jac = (base[0], base[1], 1)
    for _ in range(_WINDOWS):
        b_aff = _to_affine(b)
        assert b_aff is not None
        acc: Jac = b
        row = [acc]
        for _ in range(2, 1 << _W):
            acc = _madd(acc, b_aff)
            row.append(acc)
        jac.extend(row)
        for _ in range(_W):
            b = _dbl(b)
    flat = _batch_affine(jac)
    n = (1 << _W) - 1
    return [[(0, 0)] + flat[i * n : (i + 1) * n] for i in range(_WINDOWS)]


def _comb_mul(table: list[list[Aff]], k: int, acc: Jac = _INF) -> Jac:
    mask = (1 << _W) - 1
    i = 0
    while k:
        d = k & mask
        if d:
            acc = _madd(acc, table[i][d])
        k >>= _W
        i += 1
    return acc


_G_TABLE: list[list[Aff]] | None = None


def _g_table() -> list[list[Aff]]:
    global _G_TABLE
    if _G_TABLE is None:
        _G_TABLE = _comb_table((GX, GY))
    return _G_TABLE


def _wnaf_mul(q: Aff, k: int, w: int = 5) -> Jac:
    """k * q for a variable base q (width-w NAF, odd multiples precomputed)."""
    digits: list[int] = []
    while k:
        if k & 1:
            d = k & ((1 << w) - 1)
            if d >= 1 << (w - 1):
                d -= 1 << w
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    q2 = _dbl((q[0], q[1], 1))
    odd: list[Jac] = [(q[0], q[1], 1)]
    q2a = _to_affine(q2)
    if q2a is None:  # q has order 2: impossible on SM2 (prime order), kept for safety
        return _INF
    for _ in range((1 << (w - 2)) - 1):
        odd.append(_madd(odd[-1], q2a))
    odd_aff = _batch_affine(odd)
    acc = _INF
    for d in reversed(digits):
        acc = _dbl(acc)
        if d > 0:
            acc = _madd(acc, odd_aff[d >> 1])
        elif d < 0:
            x, y = odd_aff[(-d) >> 1]
            acc = _madd(acc, (x, P - y))
    return acc


def _int32(v: int) -> bytes:
    return v.to_bytes(32, "big")


# --------------------------------------------------------------------------- keys


class SM2PublicKey:
    """A point on the SM2 curve, validated on construction."""

    __slots__ = ("x", "y", "_za", "_table", "_uses", "_evp")

    def __init__(self, x: int, y: int) -> None:
        if not _on_curve(x, y):
            raise ValueError("not a point on the SM2 curve")
        self.x = x
        self.y = y
        self._za: bytes | None = None
        self._table: list[list[Aff]] | None = None
        self._uses = 0
        self._evp: PKey | None = None

    def _evp_key(self, be: OpenSSLSM2) -> PKey:
        # One EVP_PKEY per key object, freed with it. A race between threads only builds a spare.
        evp = self._evp
        if evp is None:
            evp = self._evp = be.load_public(spki_der(self.to_bytes()))
        return evp

    @classmethod
    def from_bytes(cls, data: bytes) -> SM2PublicKey:
        """Uncompressed (04||x||y) or compressed (02/03||x) SEC1 point."""
        if len(data) == 65 and data[0] == 4:
            return cls(int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big"))
        if len(data) == 33 and data[0] in (2, 3):
            x = int.from_bytes(data[1:], "big")
            if x >= P:
                raise ValueError("not a point on the SM2 curve")
            y = pow((x * x * x + A * x + B) % P, (P + 1) // 4, P)  # P = 3 mod 4
            if y & 1 != data[0] & 1:
                y = P - y
            return cls(x, y)
        raise ValueError("SM2 public key must be a 65-byte uncompressed or 33-byte compressed point")

    def to_bytes(self) -> bytes:
        return b"\x04" + _int32(self.x) + _int32(self.y)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"SM2PublicKey({self.to_bytes().hex()[:18]}...)"

    def za(self, uid: bytes = DEFAULT_UID) -> bytes:
        """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA)  (GB/T 32918.2 §5.5)."""
        if uid == DEFAULT_UID and self._za is not None:
            return self._za
        _check_uid(uid)
        z = sm3(
            (len(uid) * 8).to_bytes(2, "big"),
            uid,
            _int32(A),
            _int32(B),
            _int32(GX),
            _int32(GY),
            _int32(self.x),
            _int32(self.y),
        )
        if uid == DEFAULT_UID:
            self._za = z
        return z

    def digest(self, message: bytes, uid: bytes = DEFAULT_UID) -> int:
        """e = SM3(Z_A || M) as an integer: what SM3-with-SM2 actually signs."""
        return int.from_bytes(sm3(self.za(uid), message), "big")

    def _mul(self, k: int, acc: Jac = _INF) -> Jac:
        # A key that is used repeatedly (a platform verifying one hospital) earns a comb table.
        self._uses += 1
        if self._table is None and self._uses > 2:
            self._table = _comb_table((self.x, self.y))
        if self._table is not None:
            return _comb_mul(self._table, k, acc)
        q = _wnaf_mul((self.x, self.y), k)
        if acc[2] == 0:
            return q
        qa = _to_affine(q)
        return acc if qa is None else _madd(acc, qa)

    def verify(self, signature: bytes, message: bytes, uid: bytes = DEFAULT_UID) -> None:
        """Verify a DER SM3-with-SM2 signature over `message`; raise SignatureError if invalid."""
        try:
            r, s = decode_signature(signature)
        except ValueError as exc:
            raise SignatureError(f"malformed SM2 signature: {exc}") from None
        if not (1 <= r < N and 1 <= s < N):
            raise SignatureError("SM2 signature out of range")
        t = (r + s) % N
        if t == 0:
            raise SignatureError("SM2 signature invalid")
        be = _openssl()
        if be is not None:
            _check_uid(uid)
            # Re-encoded from the strictly parsed (r, s): OpenSSL never sees another encoding.
            be.verify(self._evp_key(be), encode_signature(r, s), message, uid)
            return
        e = self.digest(message, uid)
        pt = _to_affine(self._mul(t, _comb_mul(_g_table(), s)))
        if pt is None or (e + pt[0]) % N != r:
            raise SignatureError("SM2 signature does not verify")

    def is_valid_signature(self, signature: bytes, message: bytes, uid: bytes = DEFAULT_UID) -> bool:
        try:
            self.verify(signature, message, uid)
        except SignatureError:
            return False
        return True

    def encrypt(self, plaintext: bytes) -> bytes:
        """SM2 public-key encryption (GB/T 32918.4); returns the DER SM2Cipher (C1, C3, C2)."""
        if not plaintext:
            raise ValueError("SM2 plaintext must not be empty")
        be = _openssl()
        if be is not None:
            return be.encrypt(self._evp_key(be), plaintext)
        while True:
            k = secrets.randbelow(N - 1) + 1
            c1 = _to_affine(_comb_mul(_g_table(), k))
            s = _to_affine(self._mul(k))
            assert c1 is not None and s is not None  # prime-order group, 0 < k < n
            x2, y2 = _int32(s[0]), _int32(s[1])
            t = kdf(x2 + y2, len(plaintext))
            if any(t):
                break
        c2 = bytes(a ^ b for a, b in zip(plaintext, t, strict=True))
        c3 = sm3(x2, plaintext, y2)
        return der_seq(der_int(c1[0]), der_int(c1[1]), der_octets(c3), der_octets(c2))


class SM2PrivateKey:
    """An SM2 private scalar d in [1, n-2] with its public key. repr() never shows d."""

    __slots__ = ("_d", "public_key", "_evp")

    def __init__(self, d: int, public_key: SM2PublicKey | None = None) -> None:
        if not 1 <= d <= N - 2:
            raise ValueError("SM2 private key out of range")
        self._d = d
        pub = _to_affine(_comb_mul(_g_table(), d))
        assert pub is not None
        derived = SM2PublicKey(*pub)
        if public_key is not None and public_key != derived:
            raise ValueError("SM2 public key does not match the private key")
        self.public_key = derived
        self._evp: PKey | None = None

    def _evp_key(self, be: OpenSSLSM2) -> PKey:
        evp = self._evp
        if evp is None:
            evp = self._evp = be.load_private(pkcs8_private_key_der(self.d, self.public_key.to_bytes()))
        return evp

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        return cls(secrets.randbelow(N - 2) + 1)

    @property
    def d(self) -> int:
        return self._d

    def __repr__(self) -> str:
        return f"SM2PrivateKey(public={self.public_key!r})"

    def sign(self, message: bytes, uid: bytes = DEFAULT_UID) -> bytes:
        """DER SM3-with-SM2 signature of `message` (Z_A computed from `uid`)."""
        be = _openssl()
        if be is not None:
            _check_uid(uid)
            return be.sign(self._evp_key(be), message, uid)
        return self.sign_digest(self.public_key.digest(message, uid))

    def sign_digest(self, e: int) -> bytes:
        """Sign a precomputed e = SM3(Z_A || M) (GB/T 32918.2 §6.1 steps A3-A7). Python only."""
        while True:
            rs = self._sign_with_k(e, secrets.randbelow(N - 1) + 1)
            if rs is not None:
                return encode_signature(*rs)

    def _sign_with_k(self, e: int, k: int) -> tuple[int, int] | None:
        """One signing attempt with nonce k; None if k must be redrawn. Tests feed the
        standard's fixed k here; production k always comes from `secrets`."""
        pt = _to_affine(_comb_mul(_g_table(), k))
        assert pt is not None
        r = (e + pt[0]) % N
        if r == 0 or r + k == N:
            return None
        s = pow(1 + self._d, -1, N) * (k - r * self._d) % N
        return (r, s) if s else None

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Inverse of SM2PublicKey.encrypt. Accepts the DER form or raw 04||x||y||C3||C2."""
        try:
            x1, y1, c3, c2 = _parse_cipher(ciphertext)
        except ValueError as exc:
            raise DecryptError(f"malformed SM2 ciphertext: {exc}") from None
        if not _on_curve(x1, y1):
            raise DecryptError("SM2 ciphertext C1 is not on the curve")
        be = _openssl()
        if be is not None:
            # OpenSSL reads DER only, and gets the canonical encoding of what was parsed above.
            der = der_seq(der_int(x1), der_int(y1), der_octets(c3), der_octets(c2))
            return be.decrypt(self._evp_key(be), der)
        s = _to_affine(_wnaf_mul((x1, y1), self._d))
        if s is None:
            raise DecryptError("SM2 ciphertext invalid")
        x2, y2 = _int32(s[0]), _int32(s[1])
        t = kdf(x2 + y2, len(c2))
        if not any(t):
            raise DecryptError("SM2 ciphertext invalid")
        m = bytes(a ^ b for a, b in zip(c2, t, strict=True))
        if not hmac.compare_digest(sm3(x2, m, y2), c3):
            raise DecryptError("SM2 ciphertext does not decrypt under this key (C3 mismatch)")
        return m


def encode_signature(r: int, s: int) -> bytes:
    return der_seq(der_int(r), der_int(s))


def decode_signature(sig: bytes) -> tuple[int, int]:
    items = der_items(der_parse_one(sig, 0x30))
    if len(items) != 2 or items[0][0] != 0x02 or items[1][0] != 0x02:
        raise DerError("signature must be SEQUENCE { INTEGER, INTEGER }")
    return der_parse_int(items[0][1]), der_parse_int(items[1][1])


def _parse_cipher(ct: bytes) -> tuple[int, int, bytes, bytes]:
    if ct[:1] == b"\x04":  # raw C1 C3 C2
        if len(ct) < 65 + 32 + 1:
            raise ValueError("too short")
        return int.from_bytes(ct[1:33], "big"), int.from_bytes(ct[33:65], "big"), ct[65:97], ct[97:]
    items = der_items(der_parse_one(ct, 0x30))
    if [t for t, _ in items] != [0x02, 0x02, 0x04, 0x04]:
        raise DerError("expected SEQUENCE { INTEGER, INTEGER, OCTET STRING, OCTET STRING }")
    c3, c2 = items[2][1], items[3][1]
    if len(c3) != 32 or not c2:
        raise DerError("bad hash or empty ciphertext")
    return der_parse_int(items[0][1]), der_parse_int(items[1][1]), c3, c2
