"""SM2 per-operation cost, pure Python vs the system OpenSSL (cdcsync.crypto.sm2_openssl).

    .venv/bin/python bench/sm2_backends.py [--n 300]

Prints microseconds per sign / verify / encrypt (16-byte key) / decrypt and per EVP_PKEY load
(paid once per key object). The OpenSSL figures are wall time with the GIL released.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from cdcsync.crypto import sm2, sm2_openssl
from cdcsync.crypto.keys import private_key_der, public_key_der


def _us(fn: Callable[[], object], n: int) -> float:
    fn()  # warm-up: tables, EVP_PKEY cache
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def _row(key: sm2.SM2PrivateKey, pub: sm2.SM2PublicKey, msg: bytes, cek: bytes, n: int) -> list[float]:
    sig, ct = key.sign(msg), pub.encrypt(cek)
    return [
        _us(lambda: key.sign(msg), n),
        _us(lambda: pub.verify(sig, msg), n),
        _us(lambda: pub.encrypt(cek), n),
        _us(lambda: key.decrypt(ct), n),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    n = ap.parse_args().n
    key = sm2.SM2PrivateKey.generate()
    pub = sm2.SM2PublicKey(key.public_key.x, key.public_key.y)
    msg, cek = os.urandom(200), os.urandom(16)
    backends = ["python"] + (["openssl"] if sm2_openssl.BACKEND else [])
    print(f"{'backend':8} {'sign':>8} {'verify':>8} {'encrypt':>8} {'decrypt':>8}   (µs/op, n={n})")
    for name in backends:
        sm2.set_backend(name)  # type: ignore[arg-type]
        row = _row(key, pub, msg, cek, n)
        print(f"{name:8} " + " ".join(f"{v:8.0f}" for v in row))
    be = sm2_openssl.BACKEND
    if be is None:
        print(f"OpenSSL backend unavailable: {sm2_openssl.REASON}")
        return
    priv_der, pub_der = private_key_der(key), public_key_der(pub)
    print(
        f"EVP_PKEY load (once per key object): private {_us(lambda: be.load_private(priv_der), n):.0f} µs, "
        f"public {_us(lambda: be.load_public(pub_der), n):.0f} µs"
    )


if __name__ == "__main__":
    main()
