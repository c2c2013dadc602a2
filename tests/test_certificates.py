"""SM2 certificates from a CA (issue 14, section 3): CSRs from cdcsync, chain validation with
one reason per failure, the reference platform refusing uncertified senders with a signed 401,
the hospital validating the platform's certificates (rotation, expiry warnings), and trust
files that others may write being refused.

The CA is built with the OpenSSL 3 command line (tests/sm2_ca.py): root → hospital, root →
platform, plus a second root that nobody trusts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sm2_ca import SM2CA, make_csr, openssl

from cdcsync.crypto import KeyFileError, SignatureError
from cdcsync.crypto.cli import keys as keys_cli
from cdcsync.crypto.envelope import H_CERT, seal, verify_reply
from cdcsync.crypto.keys import key_id, load_private_key, load_public_key, write_keypair
from cdcsync.crypto.x509 import (
    EXPIRED,
    KEY_MISMATCH,
    KEY_USAGE,
    MISSING,
    ORG_MISMATCH,
    UNTRUSTED,
    CertificateError,
    encode_chain_header,
    load_certificates,
    validate_chain,
)
from cdcsync.event import Batch, Event
from cdcsync.sink.certs import PlatformKeys, certificate_warnings
from cdcsync.sink.http import HttpSink
from cdcsync.sink.http_settings import HttpDestination
from cdcsync.upstream_sim.app import BATCHES_PATH
from cdcsync.upstream_sim.certs import HospitalCertPolicy
from cdcsync.upstream_sim.cli import prepare_data_dir
from cdcsync.upstream_sim.runner import SimHandle, start_in_process

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

ORG = "12110000400000000X"
OTHER_ORG = "12110000400000999Y"
_seq = iter(range(1, 10**9))


@dataclasses.dataclass
class Pki:
    root: SM2CA
    stranger_root: SM2CA
    hospital_key: Path
    hospital_pub: Path
    csr: Path
    good: Path  # CSR from `cdcsync keys csr`, signed by `openssl x509 -req`
    expired: Path
    wrong_ca: Path
    wrong_usage: Path
    wrong_org: Path
    other_key: Path
    other_key_cert: Path  # a valid certificate for another hospital key
    sim_dir: Path
    platform: Path  # the simulator's platform key, 10 days left
    platform_next: Path  # a second platform key (rotation), one year
    platform_sign_only: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    root = SM2CA(d / "root", "Test SM2 Root CA")
    stranger = SM2CA(d / "stranger", "Untrusted SM2 Root CA")
    hk, hp, _ = write_keypair(d / "keys", "hospital")
    csr = d / "hospital.csr"
    res = CliRunner().invoke(keys_cli, ["csr", "--key", str(hk), "--org-code", ORG, "--name", "北京市测试医院",
                                        "--out", str(csr)])
    assert res.exit_code == 0, res.output
    ok, _op, _ = write_keypair(d / "keys", "other")
    sim_dir = d / "sim"
    prepare_data_dir(sim_dir, tls=True)
    nk, _np, _ = write_keypair(d / "keys", "platform_next")
    pcsr = make_csr(sim_dir / "platform.key", d / "platform.csr", "PLATFORM-CN", "国家平台")
    return Pki(
        root=root, stranger_root=stranger, hospital_key=hk, hospital_pub=hp, csr=csr,
        good=root.issue(csr, d / "good.pem"),
        expired=root.issue_expired(csr, d / "expired.pem"),
        wrong_ca=stranger.issue(csr, d / "wrong_ca.pem"),
        wrong_usage=root.issue(csr, d / "wrong_usage.pem", extensions="encipher_only"),
        wrong_org=root.issue(make_csr(hk, d / "other_org.csr", OTHER_ORG), d / "wrong_org.pem"),
        other_key=ok,
        other_key_cert=root.issue(make_csr(ok, d / "other_key.csr", ORG), d / "other_key.pem"),
        sim_dir=sim_dir,
        platform=root.issue(pcsr, d / "platform.pem", days=10, extensions="platform"),
        platform_next=root.issue(make_csr(nk, d / "next.csr", "PLATFORM-CN", "国家平台"), d / "next.pem",
                                 extensions="platform"),
        platform_sign_only=root.issue(pcsr, d / "platform_sign_only.pem", extensions="signature_only"),
    )


# ----------------------------------------------------------------------------- CSR


def test_csr_verifies_with_plain_openssl_and_names_the_org(pki: Pki) -> None:
    out = openssl(pki.csr.parent, "req", "-in", str(pki.csr), "-verify", "-noout", "-text", "-nameopt", "utf8")
    assert "verify OK" in out
    assert "SM2-with-SM3" in out
    assert f"organizationIdentifier={ORG}" in out and "CN=北京市测试医院" in out
    # `openssl x509 -req` accepted it (the fixture) and the certificate holds our key.
    cert = load_certificates(pki.good)[0]
    assert cert.key_id == key_id(load_public_key(pki.hospital_pub))
    assert cert.org_code == ORG


def test_csr_with_gbt35276_id_needs_distid(pki: Pki, tmp_path: Path) -> None:
    csr = tmp_path / "gm.csr"
    res = CliRunner().invoke(keys_cli, ["csr", "--key", str(pki.hospital_key), "--org-code", ORG, "--name", "医院",
                                        "--out", str(csr), "--sm2-id", "1234567812345678"])
    assert res.exit_code == 0, res.output
    assert "-vfyopt distid:1234567812345678" in res.output
    assert "verify OK" in openssl(tmp_path, "req", "-in", str(csr), "-verify", "-noout",
                                  "-vfyopt", "distid:1234567812345678")
    # OpenSSL 3.0 reports the failure in text (its exit status stays 0).
    assert "verify failure" in openssl(tmp_path, "req", "-in", str(csr), "-verify", "-noout")


def test_csr_refuses_bad_input(pki: Pki, tmp_path: Path) -> None:
    run = CliRunner().invoke
    res = run(keys_cli, ["csr", "--key", str(pki.hospital_key), "--org-code", "12 34", "--name", "医院",
                         "--out", str(tmp_path / "x.csr")])
    assert res.exit_code != 0 and "--org-code" in res.output and not (tmp_path / "x.csr").exists()
    res = run(keys_cli, ["csr", "--key", str(pki.hospital_pub), "--org-code", ORG, "--name", "医院",
                         "--out", str(tmp_path / "x.csr")])
    assert res.exit_code != 0 and "不是私钥" in res.output
    res = run(keys_cli, ["csr", "--key", str(pki.hospital_key), "--org-code", ORG, "--name", "医院",
                         "--out", str(pki.csr)])
    assert res.exit_code != 0 and "--force" in res.output


# ----------------------------------------------------------------------------- validation


def test_good_chain_passes_and_each_failure_has_its_reason(pki: Pki) -> None:
    anchors = load_certificates(pki.root.cert)
    good = load_certificates(pki.good)[0]
    assert [c.subject_text for c in validate_chain(good, anchors)] == [good.subject_text, anchors[0].subject_text]
    cases = {pki.expired: EXPIRED, pki.wrong_ca: UNTRUSTED, pki.wrong_usage: KEY_USAGE}
    for path, reason in cases.items():
        with pytest.raises(CertificateError) as exc:
            validate_chain(load_certificates(path)[0], anchors)
        assert exc.value.code == reason, (path.name, exc.value)
        assert exc.value.http_status == 401
    # Expiry is the expired certificate's only fault.
    validate_chain(load_certificates(pki.expired)[0], anchors, check_time=False)


def _headers(pki: Pki, cert: Path | None, org: str = ORG) -> dict[str, str]:
    h = {"X-Org-Code": org, "X-Key-Id": key_id(load_public_key(pki.hospital_pub))}
    if cert is not None:
        h[H_CERT] = encode_chain_header(load_certificates(cert))
    return h


def test_platform_policy_reasons(pki: Pki) -> None:
    policy = HospitalCertPolicy.from_files([pki.root.cert])
    kid = key_id(load_public_key(pki.hospital_pub))
    senders = policy.senders(_headers(pki, pki.good), {})
    assert isinstance(senders, dict) and senders[kid].org_code == ORG
    cases: list[tuple[dict[str, str], str]] = [
        (_headers(pki, None), MISSING),
        (_headers(pki, pki.expired), EXPIRED),
        (_headers(pki, pki.wrong_ca), UNTRUSTED),
        (_headers(pki, pki.wrong_usage), KEY_USAGE),
        (_headers(pki, pki.wrong_org), ORG_MISMATCH),
        (_headers(pki, pki.good, org=OTHER_ORG), ORG_MISMATCH),
        (_headers(pki, pki.other_key_cert), KEY_MISMATCH),
    ]
    for headers, reason in cases:
        with pytest.raises(CertificateError) as exc:
            policy.senders(headers, {})
        assert exc.value.code == reason, (headers.get(H_CERT, "")[:20], exc.value)
    # The cached chain is still checked against the clock.
    with pytest.raises(CertificateError) as exc:
        policy.senders(_headers(pki, pki.good), {}, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=400))
    assert exc.value.code == EXPIRED
    # Bare keys only where the platform allows them, and only without a certificate.
    bare = {kid: load_public_key(pki.hospital_pub)}
    assert HospitalCertPolicy.from_files([pki.root.cert], allow_bare_keys=True).senders(_headers(pki, None), bare) \
        is bare


# ----------------------------------------------------------------------------- over HTTP


def _events(n: int) -> list[Event]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for _ in range(n):
        i = next(_seq)
        row = {"id": i, "org_code": ORG, "icd10_code": "A01.0"}
        out.append(Event(f"{ORG}.emr:{i:016X}:0", "c", None, row, ORG, "emr", "emr", "diagnosis", i, i, now, False, 0,
                         spec_version="t", mapping_version="t"))
    return out


@pytest.fixture(scope="module")
def ca_sim(pki: Pki) -> Iterator[SimHandle]:
    # The hospital key is also registered as a bare key: with a CA, that alone is not enough.
    with start_in_process(pki.sim_dir, hospital_pubs=[pki.hospital_pub],
                          certs=HospitalCertPolicy.from_files([pki.root.cert])) as h:
        yield h


def _dest(sim: SimHandle, pki: Pki, **kw: Any) -> HttpDestination:
    base: dict[str, Any] = dict(name="national", kind="http", url=sim.url, ca_bundle=sim.ca_bundle,
                                hospital_key=pki.hospital_key, hospital_certificate=pki.good,
                                platform_certificates=[pki.platform], platform_ca_file=pki.root.cert,
                                retry_initial_s=0.05, retry_max_s=0.5, timeout_s=10)
    base.update(kw)
    return HttpDestination(**base)


def _delivered(dest: HttpDestination, n: int) -> list[Event]:
    """``n`` events sent through a sink built from ``dest``: every one accepted, none rejected."""
    sink = HttpSink(dest, org_code=ORG)
    try:
        evs = _events(n)
        ack = sink.send(Batch(evs))
    finally:
        sink.close()
    assert ack.accepted == [e.id for e in evs] and not ack.rejected
    return evs


def _refuses_replies_of(dest: HttpDestination, sim: SimHandle) -> None:
    """A sink built from ``dest`` does not take replies signed by ``sim``'s platform key."""
    sink = HttpSink(dest, org_code=ORG)
    try:
        with pytest.raises(SignatureError, match="not by a configured platform certificate"):
            sink._platform.reply_key(key_id(sim.platform_key.public_key))
    finally:
        sink.close()


def test_sink_with_certificates_delivers(ca_sim: SimHandle, pki: Pki) -> None:
    evs = _delivered(_dest(ca_sim, pki), 3)
    stored = ca_sim.received_ids()
    assert all(stored[e.id] == "diagnosis" for e in evs)


def test_platform_refuses_each_bad_certificate_with_a_signed_401(ca_sim: SimHandle, pki: Pki) -> None:
    platform_pub = load_public_key(ca_sim.platform_pub)
    cases = {None: MISSING, pki.expired: EXPIRED, pki.wrong_ca: UNTRUSTED, pki.wrong_usage: KEY_USAGE,
             pki.wrong_org: ORG_MISMATCH, pki.other_key_cert: KEY_MISMATCH}
    before = ca_sim.received_ids()
    for i, (cert, reason) in enumerate(cases.items()):
        evs = _events(1)
        bid = f"cert-{i}"
        doc = {"version": 1, "org_code": ORG, "batch_id": bid, "spec_version": "t", "mapping_version": "t",
               "events": [orjson.loads(e.encode()) for e in evs]}
        header = encode_chain_header(load_certificates(cert)) if cert else None
        sealed = seal(orjson.dumps(doc), sender_key=load_private_key(pki.hospital_key), recipient_pub=platform_pub,
                      org_code=ORG, batch_id=bid, certificate=header)
        with ca_sim.client() as c:
            r = c.post(BATCHES_PATH, content=sealed.body, headers=sealed.headers)
        assert r.status_code == 401, (reason, r.text)
        assert r.json()["error"] == reason
        verify_reply(r.content, r.headers, platform_pub=platform_pub, sealed=sealed)  # signed, for this request
    assert ca_sim.received_ids() == before


def test_hospital_refuses_replies_from_an_unlisted_platform_key(ca_sim: SimHandle, pki: Pki) -> None:
    # Listed: only the next platform certificate (another key). The sim signs with its own key.
    _refuses_replies_of(_dest(ca_sim, pki, platform_certificates=[pki.platform_next]), ca_sim)


def test_platform_rotation_accepts_either_certificate(pki: Pki, ca_sim: SimHandle) -> None:
    keys = PlatformKeys(_dest(ca_sim, pki, platform_certificates=[pki.platform, pki.platform_next]))
    current, nxt = (load_certificates(p)[0] for p in (pki.platform, pki.platform_next))
    assert keys.reply_key(current.key_id) == current.public_key
    assert keys.reply_key(nxt.key_id) == nxt.public_key
    assert keys.encryption_key() == current.public_key  # the first listed that is valid now
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=20)  # the current one has expired by then
    assert keys.encryption_key(later) == nxt.public_key
    with pytest.raises(CertificateError) as exc:
        keys.reply_key(current.key_id, later)
    assert exc.value.code == EXPIRED
    keys.check_usable(later)
    with pytest.raises(CertificateError):
        keys.check_usable(later + dt.timedelta(days=400))


def test_platform_certificate_chain_and_usage_checked_at_start(pki: Pki, ca_sim: SimHandle) -> None:
    with pytest.raises(KeyFileError, match="certificate_key_usage"):
        PlatformKeys(_dest(ca_sim, pki, platform_certificates=[pki.platform_sign_only]))
    with pytest.raises(KeyFileError, match="certificate_untrusted"):
        PlatformKeys(_dest(ca_sim, pki, platform_ca_file=pki.stranger_root.cert))
    with pytest.raises(KeyFileError, match="不匹配"):
        HttpSink(_dest(ca_sim, pki, hospital_certificate=pki.other_key_cert), org_code=ORG)
    with pytest.raises(ValueError, match="platform_ca_file"):
        HttpDestination(name="n", kind="http", url="https://x.example", hospital_key=pki.hospital_key,
                        platform_certificates=[pki.platform])


def test_expiry_warnings(pki: Pki, ca_sim: SimHandle) -> None:
    d = _dest(ca_sim, pki, platform_certificates=[pki.platform, pki.platform_next])
    warnings = certificate_warnings([d])
    assert [(w["level"], w["file"]) for w in warnings] == [("warning", str(pki.platform))]
    assert "剩余" in warnings[0]["message"] and "national" in warnings[0]["message"]
    expired = certificate_warnings([_dest(ca_sim, pki, hospital_certificate=pki.expired)])
    assert any(w["level"] == "error" and w["file"] == str(pki.expired) and "已于 2020-02-01 过期" in w["message"]
               for w in expired)
    assert certificate_warnings([_dest(ca_sim, pki, platform_certificates=[pki.platform_next])]) == []


def test_status_page_shows_certificate_warnings() -> None:
    from cdcsync.api.web_app import render_status
    from cdcsync.spec import load_spec

    html = render_status({"destinations": [], "certificate_warnings": [
        {"level": "warning", "message": "平台（national）证书将于 2030-01-01 过期（剩余 9 天），请及时更换：/x.pem"}]},
        load_spec())
    assert 'class="cert-warning warn">平台（national）证书将于 2030-01-01 过期' in html


# ----------------------------------------------------------------------------- trust files


def test_writable_trust_files_are_refused(pki: Pki, ca_sim: SimHandle, tmp_path: Path) -> None:
    for name, field in (("platform.pem", "platform_certificates"), ("ca.pem", "platform_ca_file"),
                        ("hospital.pem", "hospital_certificate")):
        src = {"platform.pem": pki.platform, "ca.pem": pki.root.cert, "hospital.pem": pki.good}[name]
        f = tmp_path / name
        shutil.copy(src, f)
        for mode in (0o664, 0o646):
            os.chmod(f, mode)
            value: Any = [f] if field == "platform_certificates" else f
            with pytest.raises(KeyFileError, match=f"chmod 644 {f}"):
                HttpSink(_dest(ca_sim, pki, **{field: value}), org_code=ORG).close()
        os.chmod(f, 0o644)
        HttpSink(_dest(ca_sim, pki, **{field: [f] if field == "platform_certificates" else f}),
                 org_code=ORG).close()
    pub = tmp_path / "platform.pub"
    shutil.copy(ca_sim.platform_pub, pub)
    os.chmod(pub, 0o666)
    with pytest.raises(KeyFileError, match="chmod 644"):
        HttpSink(_dest(ca_sim, pki, platform_certificates=[], platform_ca_file=None, platform_public_key=pub),
                 org_code=ORG)
    bundle = tmp_path / "tls-ca.pem"
    shutil.copy(ca_sim.ca_bundle, bundle)  # type: ignore[arg-type]
    os.chmod(bundle, 0o620)
    with pytest.raises(KeyFileError, match="chmod 644"):
        HttpSink(_dest(ca_sim, pki, ca_bundle=bundle), org_code=ORG)


def test_upstream_sim_cli_takes_ca_certificates(pki: Pki, tmp_path: Path) -> None:
    """The CLI flags reach the platform: a subprocess sim with --ca-cert accepts the sink."""
    from cdcsync.upstream_sim.runner import start_subprocess

    with start_subprocess(tmp_path / "sim", args=["--ca-cert", str(pki.root.cert)]) as sim:
        pcert = pki.root.issue(make_csr(tmp_path / "sim" / "platform.key", tmp_path / "p.csr", "PLATFORM-CN"),
                               tmp_path / "p.pem", extensions="platform")
        _delivered(_dest(sim, pki, platform_certificates=[pcert]), 2)
        assert sim.stats()["total"] == 2
    res = subprocess.run([sys.executable, "-m", "cdcsync", "upstream-sim", "--data-dir", str(tmp_path / "s2"),
                          "--allow-bare-keys"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "--ca-cert" in res.stderr


# ----------------------------------------------------------------------------- pushed by the platform


def test_pushed_platform_certificates_are_checked_written_and_used(pki: Pki, ca_sim: SimHandle, tmp_path: Path
                                                                   ) -> None:
    """An ``upstream`` package carrying platform certificates (cdcsync/control/trust.py): each must
    chain to the destination's own ``platform_ca_file`` (a push cannot bring its trust anchor);
    accepted ones are written 0644 into the package's generation, and the destination built from
    them verifies the platform's replies where the one pinned before did not."""
    from cdcsync.control.trust import CERTS_FIELD, KEY_FIELD, TrustError, check_trust, materialize

    dest = _dest(ca_sim, pki, platform_certificates=[pki.platform_next])  # the sim signs with another key
    platform_key = pki.sim_dir / "platform.key"
    by_stranger = pki.stranger_root.issue(make_csr(platform_key, tmp_path / "s.csr", "PLATFORM-CN"),
                                          tmp_path / "stranger.pem", extensions="platform")
    hospital_as_platform = pki.root.issue(make_csr(pki.hospital_key, tmp_path / "h.csr", ORG),
                                          tmp_path / "hospital_platform.pem", extensions="platform")
    bare = _dest(ca_sim, pki, platform_certificates=[], platform_ca_file=None, platform_public_key=ca_sim.platform_pub)
    refused: list[tuple[dict[str, Any], HttpDestination, str]] = [
        ({CERTS_FIELD: [by_stranger.read_text()]}, dest, "certificate_untrusted"),
        ({CERTS_FIELD: [pki.platform_sign_only.read_text()]}, dest, "certificate_key_usage"),
        ({CERTS_FIELD: [hospital_as_platform.read_text()]}, dest, "这是本医院的证书"),
        ({CERTS_FIELD: [pki.hospital_key.read_text()]}, dest, "包含私钥"),
        ({CERTS_FIELD: ["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"]}, dest, "平台证书"),
        ({CERTS_FIELD: []}, dest, "1 至 8 个"),
        ({CERTS_FIELD: [pki.platform.read_text()], KEY_FIELD: ca_sim.platform_pub.read_text()}, dest, "二选一"),
        ({CERTS_FIELD: [pki.platform.read_text()]}, bare, "未在本机配置 platform_ca_file"),
    ]
    for fields, target, message in refused:
        with pytest.raises(TrustError, match=message):
            check_trust(0, {"name": "national", **fields}, target)

    pushed = {"name": "national", CERTS_FIELD: [pki.platform.read_text()]}
    check_trust(0, pushed, dest)
    gen = tmp_path / "generation"
    gen.mkdir()
    out = materialize(pushed, gen)
    files = [Path(f) for f in out["platform_certificates"]]
    assert out["platform_public_key"] is None and [f.parent for f in files] == [gen]
    assert [f.stat().st_mode & 0o777 for f in files] == [0o644]
    assert files[0].read_bytes() == pki.platform.read_bytes()

    _refuses_replies_of(dest, ca_sim)
    _delivered(_dest(ca_sim, pki, platform_certificates=files), 2)
