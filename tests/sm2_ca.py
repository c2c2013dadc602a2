"""A small SM2 certificate authority built with the OpenSSL 3 command line, for the tests.

Roots are self-signed SM2-with-SM3; leaves are issued with ``openssl x509 -req`` from a CSR
(``openssl ca`` only where a past validity period is needed, which ``x509`` 3.0 cannot set).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cdcsync.crypto.keys import load_private_key
from cdcsync.crypto.x509 import build_csr, csr_pem

EXTENSIONS = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = root
[dn]
CN = placeholder
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[hospital]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
[encipher_only]
basicConstraints = critical,CA:FALSE
keyUsage = critical,keyEncipherment,dataEncipherment
[platform]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
[signature_only]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
[ca]
default_ca = testca
[testca]
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sm3
policy = anything
unique_subject = no
[anything]
commonName = supplied
"""


def openssl(cwd: Path, *args: str) -> str:
    """Run the openssl CLI; its stdout and stderr (a non-zero exit fails the test)."""
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {out.stderr}")
    return out.stdout + out.stderr


class SM2CA:
    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "ext.cnf").write_text(EXTENSIONS, encoding="utf-8")
        self.key = self.dir / f"{name}.key"
        self.cert = self.dir / f"{name}.pem"
        openssl(self.dir, "genpkey", "-algorithm", "SM2", "-out", str(self.key))
        openssl(self.dir, "req", "-new", "-x509", "-config", "ext.cnf", "-key", str(self.key), "-sm3",
                "-subj", f"/C=CN/O=cdcsync test/CN={name}", "-days", "3650", "-out", str(self.cert))

    def issue(self, csr: Path, out: Path, *, days: int = 365, extensions: str = "hospital") -> Path:
        openssl(self.dir, "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-sm3",
                "-days", str(days), "-extfile", "ext.cnf", "-extensions", extensions, "-out", str(out))
        return out

    def issue_expired(self, csr: Path, out: Path, *, extensions: str = "hospital") -> Path:
        db = self.dir / "db"
        db.mkdir(exist_ok=True)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("1000\n")
        openssl(self.dir, "ca", "-batch", "-config", "ext.cnf", "-cert", str(self.cert), "-keyfile", str(self.key),
                "-in", str(csr), "-preserveDN", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                "-extensions", extensions, "-notext", "-out", str(out))
        return out


def make_csr(key_file: Path, out: Path, org_code: str, name: str = "测试医院") -> Path:
    """A CSR as `cdcsync keys csr` writes it (the CLI itself is tested in test_certificates)."""
    out.write_bytes(csr_pem(build_csr(load_private_key(key_file), org_code=org_code, name=name)))
    return out
