"""cdcsync.crypto: published vectors, SM2 round trips, the envelope, keys, CLI, OpenSSL interop."""

from __future__ import annotations

import base64
import gc
import gzip
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from cdcsync.crypto import (
    CryptoError,
    DecryptError,
    EnvelopeError,
    ExpiredError,
    KeyFileError,
    OrgMismatchError,
    PayloadTooLargeError,
    ReplayError,
    SignatureError,
    UnknownKeyError,
    der,
    sm2,
    sm2_openssl,
    sm4,
)
from cdcsync.crypto import envelope as env
from cdcsync.crypto.cli import keys as keys_cli
from cdcsync.crypto.keys import (
    key_id,
    load_any_key,
    load_private_key,
    load_public_key,
    parse_pem,
    private_key_pem,
    public_key_der,
    public_key_pem,
    write_keypair,
)
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey
from cdcsync.crypto.sm3 import sm3

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")


@pytest.fixture(scope="module")
def hospital() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def platform() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


NATIVE = sm2_openssl.BACKEND
needs_native = pytest.mark.skipif(NATIVE is None, reason=f"OpenSSL SM2 backend unavailable: {sm2_openssl.REASON}")


@pytest.fixture(params=["python", "openssl"])
def impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once per SM2 implementation (OpenSSL is skipped where it is unavailable)."""
    name = request.param
    if name == "openssl" and NATIVE is None:
        pytest.skip(f"OpenSSL SM2 backend unavailable: {sm2_openssl.REASON}")
    sm2.set_backend(name)
    try:
        yield name
    finally:
        sm2.set_backend("auto")


# --------------------------------------------------------------------------- published vectors


def test_sm3_vectors() -> None:
    # GB/T 32905-2016 Appendix A.
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    assert sm3(b"ab", b"c") == sm3(b"abc")


def test_sm4_block_vector() -> None:
    # GB/T 32907-2016 Appendix A, example 1.
    k = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert sm4.sm4_ecb_block(k, k).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_gcm_rfc8998_vector() -> None:
    # RFC 8998 Appendix A.1 (SM4-GCM).
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    ct = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    assert sm4.encrypt_gcm(key, iv, pt, aad) == ct + tag
    assert sm4.decrypt_gcm(key, iv, ct + tag, aad) == pt
    with pytest.raises(DecryptError):
        sm4.decrypt_gcm(key, iv, ct + tag, aad + b"x")
    with pytest.raises(DecryptError):
        sm4.decrypt_gcm(key, iv, bytes([ct[0] ^ 1]) + ct[1:] + tag, aad)


def test_sm2_signature_vector() -> None:
    # GM/T 0003.5-2012 (GB/T 32918.5) example on the recommended curve, ID 1234567812345678.
    key = SM2PrivateKey(0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8)
    pub = key.public_key
    assert pub.x == 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
    assert pub.y == 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
    assert pub.za().hex() == "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
    e = pub.digest(b"message digest")
    assert e == 0xF0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640
    k = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
    r, s = key._sign_with_k(e, k) or (0, 0)
    assert r == 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
    assert s == 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
    pub.verify(sm2.encode_signature(r, s), b"message digest")


def test_sm2_signature_vector_both_implementations(impl: str) -> None:
    assert sm2.backend() == impl
    pub = SM2PrivateKey(0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8).public_key
    r = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
    s = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
    pub.verify(sm2.encode_signature(r, s), b"message digest")
    with pytest.raises(SignatureError):
        pub.verify(sm2.encode_signature(r, s), b"message digest", uid=b"")
    with pytest.raises(SignatureError):
        pub.verify(sm2.encode_signature(r, s - 1), b"message digest")


# --------------------------------------------------------------------------- SM2


def test_sm2_sign_verify_and_tamper(hospital: SM2PrivateKey, impl: str) -> None:
    msg = b"batch digest \x00\xff"
    sig = hospital.sign(msg)
    hospital.public_key.verify(sig, msg)
    assert sig[0] == 0x30  # DER SEQUENCE
    with pytest.raises(SignatureError):
        hospital.public_key.verify(sig, msg + b"!")
    for i in (5, len(sig) // 2, len(sig) - 1):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not hospital.public_key.is_valid_signature(bytes(bad), msg)
    with pytest.raises(SignatureError):
        SM2PrivateKey.generate().public_key.verify(sig, msg)
    with pytest.raises(SignatureError):
        hospital.public_key.verify(sig, msg, uid=b"another-id")
    # non-canonical DER (leading zero) and out-of-range scalars are refused
    r, s = sm2.decode_signature(sig)
    padded = der.der_seq(der.der_tlv(0x02, b"\x00" + der.der_int(r)[2:]), der.der_int(s))
    assert not hospital.public_key.is_valid_signature(padded, msg)
    assert not hospital.public_key.is_valid_signature(sm2.encode_signature(r, s + sm2.N), msg)
    assert not hospital.public_key.is_valid_signature(b"", msg)


def test_sm2_repeated_verify_uses_cached_table(hospital: SM2PrivateKey, impl: str) -> None:
    pub = SM2PublicKey(hospital.public_key.x, hospital.public_key.y)
    for i in range(5):  # crosses the comb-table threshold; results must not change
        m = b"m%d" % i
        pub.verify(hospital.sign(m), m)
        assert not pub.is_valid_signature(hospital.sign(m), m + b"x")


def test_sm2_encrypt_decrypt(hospital: SM2PrivateKey, platform: SM2PrivateKey, impl: str) -> None:
    key = os.urandom(16)
    ct = platform.public_key.encrypt(key)
    assert platform.decrypt(ct) == key
    assert ct != platform.public_key.encrypt(key)  # randomized
    with pytest.raises(DecryptError):
        hospital.decrypt(ct)
    bad = bytearray(ct)
    bad[-1] ^= 1
    with pytest.raises(DecryptError):
        platform.decrypt(bytes(bad))
    with pytest.raises(DecryptError):
        platform.decrypt(b"\x30\x03\x02\x01\x01")


def _key_whose_x_starts_with_04() -> SM2PrivateKey:
    for _ in range(5000):  # 1 key in 256
        key = SM2PrivateKey.generate()
        if f"{key.public_key.x:064x}".startswith("04"):
            return key
    raise AssertionError("no key with x = 04… in 5000 tries")


@pytest.mark.parametrize("which", ["random", "x04"])
def test_gmssl_cross_check(hospital: SM2PrivateKey, impl: str, which: str) -> None:
    gm = pytest.importorskip("gmssl.sm2")
    if which == "x04":
        hospital = _key_whose_x_starts_with_04()
    pub_hex = hospital.public_key.to_bytes().hex()[2:]

    def crypt(**kw: Any) -> Any:
        c = gm.CryptSM2(private_key=f"{hospital.d:064x}", public_key=pub_hex, **kw)
        # gmssl strips a "04" prefix with lstrip("04"), i.e. every leading 0 and 4: an x coordinate
        # whose hex starts with "04" (1 key in 256) would lose digits. The key as given, x || y.
        c.public_key = pub_hex
        return c

    c = crypt(asn1=True)
    msg = b"cross check"
    assert c.verify_with_sm3(hospital.sign(msg).hex(), msg)
    hospital.public_key.verify(bytes.fromhex(c.sign_with_sm3(msg)), msg)
    c1c3c2 = crypt(mode=1)
    assert hospital.decrypt(b"\x04" + c1c3c2.encrypt(b"0123456789abcdef")) == b"0123456789abcdef"


def test_public_key_validation() -> None:
    with pytest.raises(ValueError):
        SM2PublicKey(1, 2)
    key = SM2PrivateKey.generate()
    pub = key.public_key
    compressed = bytes([2 + (pub.y & 1)]) + pub.x.to_bytes(32, "big")
    assert SM2PublicKey.from_bytes(compressed) == pub
    with pytest.raises(ValueError):
        SM2PrivateKey(0)
    with pytest.raises(ValueError):
        SM2PrivateKey(key.d, SM2PrivateKey.generate().public_key)
    assert str(key.d) not in repr(key) and f"{key.d:x}" not in repr(key)


# --------------------------------------------------------------------------- SM2 through OpenSSL

UID = sm2.DEFAULT_UID


def _messages() -> list[bytes]:
    rng = random.Random(32918)
    sizes = [0, 1, 2, 31, 32, 33, 55, 56, 64, 1000, 100_000] + [rng.randrange(1, 5000) for _ in range(20)]
    return [os.urandom(n) for n in sizes]


def _flip(data: bytes, i: int) -> bytes:
    bad = bytearray(data)
    bad[i] ^= 0x01
    return bytes(bad)


def _using(name: str) -> None:
    sm2.set_backend(name)  # type: ignore[arg-type]
    assert sm2.backend() == name


@pytest.fixture()
def restore_backend() -> Iterator[None]:
    yield
    sm2.set_backend("auto")


def test_openssl_backend_loads_where_libcrypto3_exists() -> None:
    """A silently broken native path would only show as slowness: fail loudly instead."""
    if os.environ.get("CDCSYNC_PURE_PYTHON"):
        assert NATIVE is None and "CDCSYNC_PURE_PYTHON" in sm2_openssl.REASON
        assert sm2.backend() == "python"
        return
    try:
        sm2_openssl._find_libcrypto()
    except OSError as exc:
        pytest.skip(f"no OpenSSL 3 libcrypto here: {exc}")
    assert NATIVE is not None, sm2_openssl.REASON
    assert sm2.backend() == "openssl"


@needs_native
def test_native_and_python_signatures_interoperate(restore_backend: None) -> None:
    key = SM2PrivateKey.generate()
    pub = SM2PublicKey(key.public_key.x, key.public_key.y)
    other = SM2PrivateKey.generate().public_key
    for i, msg in enumerate(_messages()):
        uid = UID if i % 4 else os.urandom(i % 7)  # also the empty and short user IDs
        _using("openssl")
        native_sig = key.sign(msg, uid)
        _using("python")
        python_sig = key.sign(msg, uid)
        for impl in ("python", "openssl"):
            _using(impl)
            for sig in (native_sig, python_sig):
                pub.verify(sig, msg, uid)
                assert not pub.is_valid_signature(sig, msg + b"\x00", uid)
                assert not pub.is_valid_signature(sig, msg, uid + b"x")
                assert not other.is_valid_signature(sig, msg, uid)
                assert not pub.is_valid_signature(_flip(sig, len(sig) - 1 - i % 32), msg, uid)
    for impl in ("python", "openssl"):
        _using(impl)
        with pytest.raises(ValueError, match="too long"):
            key.sign(b"m", b"u" * 8192)
        with pytest.raises(ValueError, match="too long"):
            pub.verify(python_sig, b"m", b"u" * 8192)


@needs_native
def test_non_canonical_signatures_refused_by_both(hospital: SM2PrivateKey, restore_backend: None) -> None:
    """One accepted encoding per signature: the strict Python parser guards the OpenSSL path too."""
    msg = b"canonical"
    sig = hospital.sign(msg)
    r, s = sm2.decode_signature(sig)
    ri, si = der.der_int(r), der.der_int(s)
    variants = [
        der.der_seq(der.der_tlv(0x02, b"\x00" + ri[2:]), si),  # leading zero
        b"\x30\x81" + bytes([len(ri + si)]) + ri + si,  # long-form length
        sig + b"\x00",  # trailing byte
        der.der_seq(ri, si, der.der_int(0)),  # extra element
        sm2.encode_signature(r, s + sm2.N),  # s out of range
        sm2.encode_signature(r, 0),
        b"",
    ]
    for impl in ("python", "openssl"):
        _using(impl)
        hospital.public_key.verify(sig, msg)
        for bad in variants:
            with pytest.raises(SignatureError):
                hospital.public_key.verify(bad, msg)
        assert NATIVE is not None and NATIVE._lib.ERR_get_error() == 0  # queue left clean


@needs_native
def test_native_and_python_encryption_interoperate(restore_backend: None) -> None:
    key, wrong = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    for i, msg in enumerate([m for m in _messages() if m]):
        cts = []
        for impl in ("python", "openssl"):
            _using(impl)
            ct = key.public_key.encrypt(msg)
            assert ct[0] == 0x30 and len(sm2._parse_cipher(ct)[3]) == len(msg)
            cts.append(ct)
        for impl in ("python", "openssl"):
            _using(impl)
            for ct in cts:
                assert key.decrypt(ct) == msg
                with pytest.raises(DecryptError):
                    wrong.decrypt(ct)
                with pytest.raises(DecryptError):
                    key.decrypt(_flip(ct, len(ct) - 1 - i % len(msg)))  # a C2 byte
                with pytest.raises(DecryptError):
                    key.decrypt(_flip(ct, len(ct) - len(msg) - 3 - i % 32))  # a C3 byte
    assert NATIVE is not None and NATIVE._lib.ERR_get_error() == 0


@needs_native
def test_native_ciphertext_format_matches_python(restore_backend: None) -> None:
    """Both produce DER SM2Cipher { x, y, C3(32), C2 } with minimal INTEGERs."""
    key = SM2PrivateKey.generate()
    _using("openssl")
    for n in (1, 16, 300):
        ct = key.public_key.encrypt(os.urandom(n))
        x, y, c3, c2 = sm2._parse_cipher(ct)  # the strict parser accepts it
        assert der.der_seq(der.der_int(x), der.der_int(y), der.der_octets(c3), der.der_octets(c2)) == ct
        assert len(c3) == 32 and len(c2) == n and sm2._on_curve(x, y)
    for impl in ("python", "openssl"):
        _using(impl)
        with pytest.raises(ValueError, match="empty"):
            key.public_key.encrypt(b"")
        # raw 04||x||y||C3||C2 (gmssl, some HSMs) decrypts on both paths
        x, y, c3, c2 = sm2._parse_cipher(key.public_key.encrypt(b"raw form"))
        raw = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big") + c3 + c2
        assert key.decrypt(raw) == b"raw form"
        with pytest.raises(DecryptError):
            key.decrypt(b"\x30\x03\x02\x01\x01")
        with pytest.raises(DecryptError, match="not on the curve"):
            key.decrypt(der.der_seq(der.der_int(x), der.der_int(y ^ 1), der.der_octets(c3), der.der_octets(c2)))


@needs_native
def test_openssl_path_is_used_and_keys_are_freed(restore_backend: None) -> None:
    """Each operation builds (once) and uses the key object's EVP_PKEY; dropping the key frees it."""
    _using("openssl")
    key = SM2PrivateKey.generate()
    pub = SM2PublicKey(key.public_key.x, key.public_key.y)
    sig = key.sign(b"x")
    evp = key._evp
    assert evp is not None and evp.private
    ct = pub.encrypt(b"x")
    assert pub._evp is not None and not pub._evp.private
    key2 = SM2PrivateKey(key.d)  # decrypt alone builds the private EVP_PKEY
    assert key2.decrypt(ct) == b"x" and key2._evp is not None
    pub2 = SM2PublicKey(pub.x, pub.y)  # verify alone builds the public one
    pub2.verify(sig, b"x")
    assert pub2._evp is not None
    key.sign(b"y")
    assert key._evp is evp  # cached, not rebuilt
    _using("python")
    pub3 = SM2PublicKey(pub.x, pub.y)
    pub3.verify(sig, b"x")
    assert pub3._evp is None
    refs = [weakref.ref(k) for k in (key._evp, key.public_key._evp, pub._evp, key2._evp, pub2._evp) if k]
    assert len(refs) == 4
    del key, pub, key2, pub2, evp
    gc.collect()
    assert all(r() is None for r in refs)  # their finalizers (EVP_PKEY_free) have run


def test_pure_python_environment_forces_fallback(tmp_path: Path) -> None:
    code = (
        "from cdcsync.crypto import sm2, sm2_openssl\n"
        "assert sm2_openssl.BACKEND is None and sm2.backend() == 'python', sm2_openssl.REASON\n"
        "k = sm2.SM2PrivateKey.generate()\n"
        "k.public_key.verify(k.sign(b'm'), b'm')\n"
        "assert k.decrypt(k.public_key.encrypt(b'cek')) == b'cek'\n"
        "print('python-ok')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "CDCSYNC_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and "python-ok" in r.stdout, r.stderr


@needs_native
def test_native_call_releases_the_gil(restore_backend: None) -> None:
    """While one thread is inside a long OpenSSL call (SM3 over 32 MB, ~0.1 s), another thread
    keeps running Python. With the GIL held the main loop would stall for the whole call."""
    assert NATIVE is not None
    key = SM2PrivateKey.generate()
    evp = key._evp_key(NATIVE)
    big = bytes(32 << 20)
    attempts = []
    for _ in range(3):  # a busy machine may deschedule us once; a held GIL fails every attempt
        span: list[float] = []

        def work(span: list[float]) -> None:
            t0 = time.perf_counter()
            NATIVE.sign(evp, big, UID)
            span.extend((t0, time.perf_counter()))

        stamps = []
        th = threading.Thread(target=work, args=(span,))
        th.start()
        while th.is_alive():
            stamps.append(time.perf_counter())
        th.join()
        t0, t1 = span
        inside = [t for t in stamps if t0 <= t <= t1]
        gaps = [b - a for a, b in zip([t0, *inside], [*inside, t1], strict=True)]
        attempts.append((t1 - t0, max(gaps)))
        if max(gaps) < (t1 - t0) / 3:
            return
    pytest.fail(f"main thread stalled during the OpenSSL call (call s, longest stall s): {attempts}")


def _schedstat() -> tuple[int, int]:
    """This thread's (ns on a CPU, ns runnable but waiting for one) from Linux schedstat."""
    on_cpu, waiting, _ = Path("/proc/thread-self/schedstat").read_text().split()
    return int(on_cpu), int(waiting)


@needs_native
@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="needs Linux schedstat")
def test_two_threads_sign_in_parallel(restore_backend: None) -> None:
    """Two threads signing 150 times each through SM2PrivateKey.sign. Judged by how long each
    thread *slept* (wall time minus time on a CPU minus time queued for one), not by wall time:
    a thread waiting for a GIL held across the OpenSSL call sleeps (measured 0.25-0.5 of its
    time), a thread that only lacks a free core on a busy machine is queued (measured < 0.05)."""
    _using("openssl")
    key = SM2PrivateKey.generate()
    key.sign(b"warm-up")
    assert key._evp is not None  # the OpenSSL path is the one being timed
    n = 150  # ~50 ms of signing per thread

    def run(start: threading.Barrier, out: list[float]) -> None:
        start.wait()
        cpu0, rq0 = _schedstat()
        t0 = time.perf_counter_ns()
        for i in range(n):
            key.sign(b"%d" % i)
        wall = time.perf_counter_ns() - t0
        cpu1, rq1 = _schedstat()
        out.append(round((wall - (cpu1 - cpu0) - (rq1 - rq0)) / wall, 3))

    attempts = []
    for _ in range(5):  # transient sleeps (page faults, allocator, a busy host) are rare; a held GIL is not
        slept: list[float] = []
        start = threading.Barrier(2)
        threads = [threading.Thread(target=run, args=(start, slept)) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        attempts.append(slept)
        # A held GIL makes *both* threads sleep 0.25-0.5 of their time in every attempt; one thread
        # that hardly slept proves the call runs without it (the other may have been descheduled).
        if min(slept) < 0.1:
            return
    pytest.fail(f"signing threads slept (fraction of their wall time) {attempts}: is the GIL held?")


# --------------------------------------------------------------------------- keys


def test_pem_round_trip_and_key_id(hospital: SM2PrivateKey) -> None:
    priv = parse_pem(private_key_pem(hospital))
    assert isinstance(priv, SM2PrivateKey) and priv.d == hospital.d
    pub = parse_pem(public_key_pem(hospital.public_key))
    assert isinstance(pub, SM2PublicKey) and pub == hospital.public_key
    assert key_id(pub) == sm3(public_key_der(pub)).hex()
    with pytest.raises(ValueError):
        parse_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(ValueError):
        parse_pem(b"not a pem")


def test_write_keypair_modes_and_overwrite(tmp_path: Path) -> None:
    key_path, pub_path, key = write_keypair(tmp_path / "k", "hosp")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub_path.stat().st_mode) == 0o644
    assert load_private_key(key_path).d == key.d
    assert load_public_key(pub_path) == key.public_key
    with pytest.raises(KeyFileError, match="已存在"):
        write_keypair(tmp_path / "k", "hosp")
    _, _, key2 = write_keypair(tmp_path / "k", "hosp", force=True)
    assert load_private_key(key_path).d == key2.d != key.d
    with pytest.raises(KeyFileError):
        write_keypair(tmp_path, "../evil")


def test_private_key_permissions(tmp_path: Path) -> None:
    key_path, pub_path, key = write_keypair(tmp_path, "h")
    for mode in (0o644, 0o640, 0o604, 0o660):
        os.chmod(key_path, mode)
        with pytest.raises(KeyFileError, match="chmod 600") as exc:
            load_private_key(key_path)
        assert f"{key.d:064x}" not in str(exc.value).lower()
    os.chmod(key_path, 0o400)
    assert load_private_key(key_path).d == key.d
    with pytest.raises(KeyFileError, match="公钥"):
        load_private_key(pub_path)
    os.chmod(key_path, 0o600)
    with pytest.raises(KeyFileError, match="私钥"):
        load_public_key(key_path)
    with pytest.raises(KeyFileError, match="找不到"):
        load_public_key(tmp_path / "missing.pub")
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(KeyFileError, match="junk.pub"):
        load_public_key(tmp_path / "junk.pub")
    assert isinstance(load_any_key(pub_path), SM2PublicKey)


def test_cli_generate_and_show(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "keys"
    r = runner.invoke(keys_cli, ["generate", "--out", str(out), "--name", "hospital"])
    assert r.exit_code == 0, r.output
    kid = key_id(load_public_key(out / "hospital.pub"))
    assert kid in r.output
    r = runner.invoke(keys_cli, ["generate", "--out", str(out)])
    assert r.exit_code == 1 and "已存在" in r.output and "Traceback" not in r.output
    r = runner.invoke(keys_cli, ["generate", "--out", str(out), "--force"])
    assert r.exit_code == 0
    key = load_private_key(out / "hospital.key")
    r = runner.invoke(keys_cli, ["show", str(out / "hospital.key")])
    assert r.exit_code == 0 and key_id(key.public_key) in r.output and "0600" in r.output
    assert f"{key.d:064x}" not in r.output
    r = runner.invoke(keys_cli, ["show", str(tmp_path / "nope.pub")])
    assert r.exit_code == 1 and "找不到" in r.output


# --------------------------------------------------------------------------- envelope

PAYLOAD = orjson.dumps(
    {
        "version": 1,
        "org_code": "12340000123456789X",
        "batch_id": "national-0000000016B7F8A0-3",
        "events": [{"id": f"e{i}", "table": "diagnosis", "op": "c", "payload": {"n": i}} for i in range(200)],
    }
)


def _seal(hospital: SM2PrivateKey, platform: SM2PrivateKey, **kw: object) -> env.Sealed:
    args: dict[str, object] = {
        "sender_key": hospital,
        "recipient_pub": platform.public_key,
        "org_code": "12340000123456789X",
        "batch_id": "national-0000000016B7F8A0-3",
    }
    args.update(kw)
    return env.seal(PAYLOAD, **args)  # type: ignore[arg-type]


def _open(sealed: env.Sealed, hospital: SM2PrivateKey, platform: SM2PrivateKey, **kw: object) -> env.Opened:
    body = kw.pop("body", sealed.body)
    headers = kw.pop("headers", sealed.headers)
    keys = kw.pop("sender_keys", {key_id(hospital.public_key): hospital.public_key})
    return env.open_sealed(
        body,  # type: ignore[arg-type]
        headers,  # type: ignore[arg-type]
        recipient_key=platform,
        sender_keys=keys,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_envelope_round_trip(hospital: SM2PrivateKey, platform: SM2PrivateKey) -> None:
    sealed = _seal(hospital, platform)
    assert sealed.body[:4] == b"CDCE" and PAYLOAD[:20] not in sealed.body
    assert sealed.headers["X-Key-Id"] == key_id(hospital.public_key)
    opened = _open(sealed, hospital, platform)
    assert opened.payload == PAYLOAD
    assert (opened.org_code, opened.batch_id) == (sealed.org_code, sealed.batch_id)
    assert opened.body_sm3 == sealed.body_sm3
    # headers are matched case-insensitively (HTTP)
    lower = {k.lower(): v for k, v in sealed.headers.items()}
    assert _open(sealed, hospital, platform, headers=lower).payload == PAYLOAD
    # a retry is a fresh seal: new key, nonce, signature
    again = _seal(hospital, platform)
    assert again.body != sealed.body and again.batch_id == sealed.batch_id


def test_envelope_flipped_body_byte_is_signature_error(hospital: SM2PrivateKey, platform: SM2PrivateKey) -> None:
    sealed = _seal(hospital, platform)
    for i in (0, 10, 100, len(sealed.body) // 2, len(sealed.body) - 1):
        bad = bytearray(sealed.body)
        bad[i] ^= 0x01
        with pytest.raises(SignatureError):
            _open(sealed, hospital, platform, body=bytes(bad))


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Org-Code", "12340000123456789Y"),
        ("X-Batch-Id", "national-0000000016B7F8A0-4"),
        ("X-Timestamp", "2030-01-01T00:00:00.000Z"),
    ],
)
def test_envelope_swapped_header_is_signature_error(
    hospital: SM2PrivateKey, platform: SM2PrivateKey, header: str, value: str
) -> None:
    sealed = _seal(hospital, platform)
    with pytest.raises(SignatureError):
        _open(sealed, hospital, platform, headers={**sealed.headers, header: value})


def test_envelope_wrong_recipient_is_decrypt_error(hospital: SM2PrivateKey, platform: SM2PrivateKey) -> None:
    sealed = env.seal(
        PAYLOAD,
        sender_key=hospital,
        recipient_pub=SM2PrivateKey.generate().public_key,
        org_code="ORG1",
        batch_id="b1",
    )
    with pytest.raises(DecryptError):
        _open(sealed, hospital, platform)


def test_envelope_freshness_and_replay(hospital: SM2PrivateKey, platform: SM2PrivateKey) -> None:
    old = _seal(hospital, platform, timestamp=datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(ExpiredError):
        _open(old, hospital, platform)
    future = _seal(hospital, platform, timestamp=datetime.now(UTC) + timedelta(minutes=6))
    with pytest.raises(ExpiredError):
        _open(future, hospital, platform)
    assert _open(old, hospital, platform, window_s=600).payload == PAYLOAD

    cache = env.ReplayCache()
    sealed = _seal(hospital, platform)
    _open(sealed, hospital, platform, replay_cache=cache)
    with pytest.raises(ReplayError) as exc:
        _open(sealed, hospital, platform, replay_cache=cache)
    assert exc.value.http_status == 409
    # the legitimate retry of the same batch is re-sealed and passes
    _open(_seal(hospital, platform), hospital, platform, replay_cache=cache)


def test_envelope_key_and_header_errors(hospital: SM2PrivateKey, platform: SM2PrivateKey) -> None:
    sealed = _seal(hospital, platform)
    with pytest.raises(UnknownKeyError):
        _open(sealed, hospital, platform, sender_keys={})
    kid = key_id(hospital.public_key)
    with pytest.raises(OrgMismatchError):
        _open(sealed, hospital, platform, sender_keys={kid: env.SenderKey(hospital.public_key, "OTHER")})
    ok = _open(sealed, hospital, platform, sender_keys=lambda k: env.SenderKey(hospital.public_key, sealed.org_code))
    assert ok.payload == PAYLOAD
    headers = dict(sealed.headers)
    del headers["X-Signature"]
    with pytest.raises(EnvelopeError, match="X-Signature"):
        _open(sealed, hospital, platform, headers=headers)
    with pytest.raises(SignatureError):
        _open(sealed, hospital, platform, headers={**sealed.headers, "X-Signature": "!!notbase64"})
    with pytest.raises(EnvelopeError, match="X-Timestamp"):
        _open(sealed, hospital, platform, headers={**sealed.headers, "X-Timestamp": "yesterday"})
    with pytest.raises(EnvelopeError):
        env.seal(PAYLOAD, sender_key=hospital, recipient_pub=platform.public_key, org_code="a\nb", batch_id="x")
    assert issubclass(EnvelopeError, CryptoError) and issubclass(SignatureError, CryptoError)


def test_envelope_validly_signed_garbage(hospital: SM2PrivateKey, platform: SM2PrivateKey) -> None:
    """A body that is signed correctly but is not an envelope, or a gzip bomb, is refused cleanly."""

    def signed(body: bytes) -> dict[str, str]:
        ts = env.format_timestamp()
        kid = key_id(hospital.public_key)
        msg = env.request_signing_string("ORG1", kid, "b1", ts, sm3(body))
        sig = base64.b64encode(hospital.sign(msg)).decode()
        return {"X-Org-Code": "ORG1", "X-Key-Id": kid, "X-Batch-Id": "b1", "X-Timestamp": ts, "X-Signature": sig}

    keys = {key_id(hospital.public_key): hospital.public_key}
    with pytest.raises(EnvelopeError, match="magic"):
        env.open_sealed(b"GARBAGE!", signed(b"GARBAGE!"), recipient_key=platform, sender_keys=keys)
    bomb = env.seal(
        b"\0" * (4 << 20), sender_key=hospital, recipient_pub=platform.public_key, org_code="ORG1", batch_id="b1"
    )
    assert len(bomb.body) < 64 * 1024
    with pytest.raises(PayloadTooLargeError):
        env.open_sealed(bomb.body, bomb.headers, recipient_key=platform, sender_keys=keys, max_payload=1 << 20)
    with pytest.raises(PayloadTooLargeError):
        env.open_sealed(bomb.body, bomb.headers, recipient_key=platform, sender_keys=keys, max_body=1024)


def test_reply_sign_and_verify(hospital: SM2PrivateKey, platform: SM2PrivateKey) -> None:
    sealed = _seal(hospital, platform)
    reply = env.Reply(
        sealed.org_code,
        sealed.batch_id,
        accepted=["e1", "e2"],
        rejected=[env.Rejection("e3", "值域代码不存在", "diag_code")],
        duplicates=["e2"],
    )
    body = reply.to_json()
    headers = env.sign_reply(
        body, platform_key=platform, org_code=sealed.org_code, batch_id=sealed.batch_id, request_sm3=sealed.body_sm3
    )
    got = env.open_reply(body, headers, platform_pub=platform.public_key, sealed=sealed)
    assert got == reply
    assert got.unaccounted(["e1", "e2", "e3", "e4"]) == ["e4"]

    tampered = body.replace(b'"e3"', b'"e4"')
    with pytest.raises(SignatureError):
        env.open_reply(tampered, headers, platform_pub=platform.public_key, sealed=sealed)
    other = _seal(hospital, platform)  # same batch id, another request: the old reply must not fit
    with pytest.raises(SignatureError):
        env.open_reply(body, headers, platform_pub=platform.public_key, sealed=other)
    with pytest.raises(SignatureError):
        env.open_reply(body, headers, platform_pub=hospital.public_key, sealed=sealed)
    forged = env.sign_reply(
        body, platform_key=hospital, org_code=sealed.org_code, batch_id=sealed.batch_id, request_sm3=sealed.body_sm3
    )
    with pytest.raises(SignatureError):
        env.open_reply(body, forged, platform_pub=platform.public_key, sealed=sealed)
    err = env.error_body("bad_signature", "签名验证失败")
    err_headers = env.sign_reply(
        err, platform_key=platform, org_code=sealed.org_code, batch_id=sealed.batch_id, request_sm3=sealed.body_sm3
    )
    with pytest.raises(EnvelopeError, match="bad_signature"):
        env.open_reply(err, err_headers, platform_pub=platform.public_key, sealed=sealed)


# --------------------------------------------------------------------------- OpenSSL 3 interop


def _ossl(*args: str, stdin: bytes | None = None) -> bytes:
    assert OPENSSL is not None
    r = subprocess.run([OPENSSL, *args], input=stdin, capture_output=True, check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


@needs_openssl
@pytest.mark.parametrize("genargs", [["-algorithm", "SM2"], ["-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:SM2"]])
def test_openssl_keys_load_in_cdcsync(tmp_path: Path, genargs: list[str]) -> None:
    key_file, pub_file = tmp_path / "o.key", tmp_path / "o.pub"
    _ossl("genpkey", *genargs, "-out", str(key_file))
    os.chmod(key_file, 0o600)
    _ossl("pkey", "-in", str(key_file), "-pubout", "-out", str(pub_file))
    key = load_private_key(key_file)
    assert load_public_key(pub_file) == key.public_key
    # byte-identical re-encoding: our PEM is what OpenSSL writes
    assert private_key_pem(key) == key_file.read_bytes()
    assert public_key_pem(key.public_key) == pub_file.read_bytes()
    der = _ossl("pkey", "-pubin", "-in", str(pub_file), "-outform", "DER")
    assert key_id(key.public_key) == sm3(der).hex()
    # legacy SEC1 "EC PRIVATE KEY" is read too
    sec1 = _ossl("ec", "-in", str(key_file))
    assert b"BEGIN EC PRIVATE KEY" in sec1 or b"BEGIN SM2 PRIVATE KEY" in sec1
    sec1_key = parse_pem(sec1)
    assert isinstance(sec1_key, SM2PrivateKey) and sec1_key.d == key.d


@needs_openssl
def test_cdcsync_keys_load_in_openssl(tmp_path: Path) -> None:
    key_path, pub_path, key = write_keypair(tmp_path, "h")
    text = _ossl("pkey", "-in", str(key_path), "-text", "-noout").decode()
    assert "ASN1 OID: SM2" in text
    assert f"{key.d:064x}" in "".join(text.split()).replace(":", "")  # OpenSSL parsed the scalar
    assert _ossl("pkey", "-in", str(key_path), "-pubout") == pub_path.read_bytes()
    assert "ASN1 OID: SM2" in _ossl("pkey", "-pubin", "-in", str(pub_path), "-text", "-noout").decode()


@needs_openssl
def test_openssl_signature_interop(tmp_path: Path, impl: str) -> None:
    key_path, pub_path, key = write_keypair(tmp_path, "h")
    msg_file, sig_file = tmp_path / "msg", tmp_path / "sig"
    msg = env.request_signing_string("ORG1", key_id(key.public_key), "b1", env.format_timestamp(), sm3(b"x"))
    msg_file.write_bytes(msg)
    sig_file.write_bytes(key.sign(msg))
    verify = ["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", str(pub_path)]
    verify += ["-in", str(msg_file), "-sigfile", str(sig_file)]
    # OpenSSL 3 uses an EMPTY distinguishing ID unless told: distid is required for GB/T 35276.
    out = _ossl(*verify, "-pkeyopt", "distid:1234567812345678")
    assert b"Verified Successfully" in out
    # and cdcsync verifies OpenSSL's signature
    osig = tmp_path / "osig"
    _ossl(
        "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(key_path),
        "-in", str(msg_file), "-out", str(osig), "-pkeyopt", "distid:1234567812345678",
    )  # fmt: skip
    key.public_key.verify(osig.read_bytes(), msg)
    with pytest.raises(SignatureError):
        key.public_key.verify(osig.read_bytes(), msg + b"x")


@needs_openssl
def test_openssl_encryption_interop(tmp_path: Path, impl: str) -> None:
    key_path, pub_path, key = write_keypair(tmp_path, "h")
    cek = os.urandom(16)
    ct_file = tmp_path / "ct"
    ct_file.write_bytes(key.public_key.encrypt(cek))
    assert _ossl("pkeyutl", "-decrypt", "-inkey", str(key_path), "-in", str(ct_file)) == cek
    ossl_ct = _ossl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub_path), stdin=cek)
    assert key.decrypt(ossl_ct) == cek


@needs_openssl
def test_public_key_from_openssl_certificate(tmp_path: Path) -> None:
    key_path, _, key = write_keypair(tmp_path, "p")
    cert = tmp_path / "p.crt"
    _ossl(
        "req", "-new", "-x509", "-key", str(key_path), "-sm3", "-subj", "/CN=platform",
        "-sigopt", "distid:1234567812345678", "-days", "1", "-out", str(cert),
    )  # fmt: skip
    assert load_public_key(cert) == key.public_key


@needs_openssl
def test_envelope_opens_with_openssl_only_tools(tmp_path: Path) -> None:
    """docs/upstream-protocol.md as a platform implementer would follow it with OpenSSL."""
    hosp_key, hosp_pub, hospital = write_keypair(tmp_path, "hospital")
    plat_key, _, platform = write_keypair(tmp_path, "platform")
    sealed = env.seal(PAYLOAD, sender_key=hospital, recipient_pub=platform.public_key, org_code="ORG1", batch_id="b-1")
    h = sealed.headers
    signing = "\n".join(
        ["CDCSYNC-SM2-REQUEST-V1", h["X-Org-Code"], h["X-Key-Id"], h["X-Batch-Id"], h["X-Timestamp"]]
        + [openssl_sm3_hex(sealed.body)]
    )
    (tmp_path / "msg").write_text(signing)
    (tmp_path / "sig").write_bytes(base64.b64decode(h["X-Signature"]))
    out = _ossl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", str(hosp_pub),
        "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig"),
        "-pkeyopt", "distid:1234567812345678",
    )  # fmt: skip
    assert b"Verified Successfully" in out
    body = sealed.body
    wlen = int.from_bytes(body[6:8], "big")
    (tmp_path / "wrapped").write_bytes(body[8 : 8 + wlen])
    cek = _ossl("pkeyutl", "-decrypt", "-inkey", str(plat_key), "-in", str(tmp_path / "wrapped"))
    nonce = body[8 + wlen : 20 + wlen]
    compressed = sm4.decrypt_gcm(cek, nonce, body[20 + wlen :], aad=body[: 20 + wlen])
    assert gzip.decompress(compressed) == PAYLOAD


def openssl_sm3_hex(data: bytes) -> str:
    """SM3 through the openssl binary, independent of cdcsync.crypto.sm3."""
    return _ossl("dgst", "-sm3", "-r", stdin=data).split()[0].decode()
