"""TLS on the HTTP listeners, the plain-HTTP rule for 8881/8883, and the offline /docs page.

Real handshakes over loopback with certificates made by ``cdcsync keys tls-selfsigned`` (and, for
mutual TLS, a client CA built here with ``cryptography``). Nothing is ever sent to a non-loopback
address: the plain-HTTP rule is checked on the configuration, before anything is bound.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cdcsync.api import server as api_server
from cdcsync.api.server import ApiStartError, ServerHandle, start_servers
from cdcsync.api.web_app import render_status
from cdcsync.crypto.tls import TlsFiles, tls_files
from cdcsync.db.cluster import LocalCluster
from cdcsync.settings.api import ApiSettings, DataListenerSettings, ListenerSettings, plain_http_findings
from cdcsync.spec import load_spec
from tests.api_helpers import ORG, REPO, drop_database, local_api, new_database, settings_for
from tests.cdc_util import cli_cmd

NO_DB = "host=127.0.0.1 port=1 dbname=none connect_timeout=1"  # /healthz and /docs need no database


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """``cdcsync keys tls-selfsigned`` through the real command line."""
    out = tmp_path_factory.mktemp("tls") / "certs"
    cfg = out.parent / "config.yaml"
    cfg.write_text(yaml.safe_dump({"org_code": ORG}), encoding="utf-8")
    done = subprocess.run(cli_cmd(cfg, "keys", "tls-selfsigned", "--host", "127.0.0.1", "--host", "localhost",
                                  "--out", str(out)), capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    assert "tls_cert_file" in done.stdout
    again = subprocess.run(cli_cmd(cfg, "keys", "tls-selfsigned", "--host", "x", "--out", str(out)),
                           capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert again.returncode != 0 and "--force" in again.stderr, "existing certificates are not overwritten"
    return tls_files(out)


def test_selfsigned_certificate_names_the_hosts_and_key_is_private(certs: TlsFiles) -> None:
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert certs.key.stat().st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)


def _api(data: DataListenerSettings, **kw: Any) -> ApiSettings:
    off = {"host": "127.0.0.1", "port": 0, "enabled": False}
    return ApiSettings(data=data, monitor=ListenerSettings(**off), web=ListenerSettings(**off), **kw)


@contextmanager
def serving(data: DataListenerSettings, settings: Any = None) -> Iterator[ServerHandle]:
    handle = start_servers(settings or settings_for(NO_DB), api=_api(data))
    try:
        yield handle
    finally:
        handle.stop()


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def test_https_handshake_with_the_selfsigned_certificate(certs: TlsFiles) -> None:
    data = DataListenerSettings(host="127.0.0.1", port=0, tls_cert_file=certs.cert, tls_key_file=certs.key)
    with serving(data) as h:
        url = f"https://127.0.0.1:{h.ports['data']}/healthz"
        assert httpx.get(url, verify=_trusting(certs.ca_cert), timeout=10).json() == {"status": "ok"}
        with pytest.raises(httpx.ConnectError):  # not trusted by the system store: no silent fallback
            httpx.get(url, timeout=10)
        with pytest.raises(httpx.TransportError):  # plain HTTP is not answered on a TLS listener
            httpx.get(url.replace("https://", "http://"), timeout=10)


def _client_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A client CA and one client certificate (clientAuth) issued by it: (ca.pem, client.pem, client.key)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test HIS client CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "his")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "client-ca.pem", directory / "client.pem", directory / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_mutual_tls_refuses_a_client_without_certificate(certs: TlsFiles, tmp_path: Path) -> None:
    client_ca, client_cert, client_key = _client_ca(tmp_path)
    data = DataListenerSettings(host="127.0.0.1", port=0, tls_cert_file=certs.cert, tls_key_file=certs.key,
                                tls_client_ca_file=client_ca)
    with serving(data) as h:
        url = f"https://127.0.0.1:{h.ports['data']}/healthz"
        with pytest.raises(httpx.TransportError):
            httpx.get(url, verify=_trusting(certs.ca_cert), timeout=10)
        with_cert = _trusting(certs.ca_cert)
        with_cert.load_cert_chain(client_cert, client_key)
        assert httpx.get(url, verify=with_cert, timeout=10).status_code == 200


def test_bad_tls_files_stop_the_start_with_the_config_key(certs: TlsFiles, tmp_path: Path) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(certs.key.read_bytes())
    loose.chmod(0o644)
    cases = [
        (loose, certs.cert, "chmod 600"),
        (tmp_path / "missing.key", certs.cert, "tls_key_file"),
        (certs.key, certs.ca_cert, "相互匹配"),  # the CA's certificate does not belong to the server key
    ]
    for key, cert, expected in cases:
        data = DataListenerSettings(host="127.0.0.1", port=0, tls_cert_file=cert, tls_key_file=key)
        with pytest.raises(ApiStartError, match=expected) as err:
            start_servers(settings_for(NO_DB), api=_api(data))
        assert "api.data" in str(err.value)


def test_tls_settings_must_be_complete(tmp_path: Path) -> None:
    from cdcsync.config import ConfigError, load_settings

    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"org_code": ORG, "api": {"monitor": {"port": 8883, "tls_cert_file": "/x.pem"}}}),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match=r"api\.monitor.*tls_key_file"):
        load_settings(cfg, environ={})


def test_plain_http_off_loopback_needs_explicit_consent() -> None:
    refusals, warnings = plain_http_findings(ApiSettings())  # the defaults: 0.0.0.0, no TLS
    assert len(refusals) == 2 and not warnings
    assert "api.data" in refusals[0] and "allow_plain_http" in refusals[0] and "tls-selfsigned" in refusals[0]
    assert "api.monitor" in refusals[1]  # 8884 (no patient data, no secrets) is not held to the rule

    consent = ApiSettings(data=DataListenerSettings(port=8881, allow_plain_http=True))
    refusals, warnings = plain_http_findings(consent)
    assert [r for r in refusals if "api.data" in r] == [] and len(warnings) == 1 and "api.data" in warnings[0]

    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        loop = ApiSettings(data=DataListenerSettings(host=host, port=8881),
                           monitor=ListenerSettings(host=host, port=8883))
        assert plain_http_findings(loop) == ([], []), host
    tls = ApiSettings(data=DataListenerSettings(port=8881, tls_cert_file=Path("c"), tls_key_file=Path("k")),
                      monitor=ListenerSettings(port=8883, enabled=False))
    assert plain_http_findings(tls) == ([], [])
    for host in ("10.1.2.3", "0.0.0.0", "::", "frontend.hospital.local"):  # noqa: S104
        assert plain_http_findings(ApiSettings(data=DataListenerSettings(host=host, port=8881)),
                                   only=["data"])[0], host


def test_start_refuses_plain_http_off_loopback_before_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[str] = []
    monkeypatch.setattr(api_server, "_bind", lambda name, cfg: bound.append(name))
    with pytest.raises(ApiStartError, match="allow_plain_http"):
        start_servers(settings_for(NO_DB), api=_api(DataListenerSettings(host="0.0.0.0", port=0)))  # noqa: S104
    assert bound == [], "nothing is bound when the configuration is refused"


def test_consented_plain_http_warns_at_every_start_and_on_the_status(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """allow_plain_http on 0.0.0.0: each start logs the warning once; the status page, the
    monitoring status and ``status`` carry it. The socket is bound to loopback instead of the
    configured address (this test must not listen on the network)."""
    real_bind = api_server._bind
    monkeypatch.setattr(api_server, "_bind",
                        lambda name, cfg: real_bind(name, cfg.model_copy(update={"host": "127.0.0.1"})))
    exposed = DataListenerSettings(host="0.0.0.0", port=0, allow_plain_http=True)  # noqa: S104
    settings = settings_for(NO_DB, api={"data": exposed.model_dump(), "monitor": {"port": 0, "enabled": False},
                                        "web": {"host": "127.0.0.1", "port": 0}})
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cdcsync.api"), serving(exposed, settings) as h:
            assert httpx.get(f"http://127.0.0.1:{h.ports['data']}/healthz", timeout=10).status_code == 200
        warned = [r for r in caplog.records if "allow_plain_http" in r.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING

    from cdcsync.ops.status import build_status

    st = build_status(settings)
    assert len(st["listener_warnings"]) == 1 and "明文 HTTP" in st["listener_warnings"][0]
    page = render_status(st, load_spec())
    assert "安全提示" in page and "allow_plain_http" in page
    web = start_servers(settings, api=local_api(("web",)))
    try:
        html = httpx.get(f"http://127.0.0.1:{web.ports['web']}/status.html", timeout=30).text
    finally:
        web.stop()
    assert 'id="listener-warnings"><div class="notice attention">安全提示' in html


def _docs_listener(docs: bool) -> DataListenerSettings:
    return DataListenerSettings(host="127.0.0.1", port=0, docs=docs)


def test_docs_page_works_offline() -> None:
    with serving(_docs_listener(True)) as h:
        base = f"http://127.0.0.1:{h.ports['data']}"
        page = httpx.get(f"{base}/docs", timeout=10)
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        external = re.findall(r"(?:https?:)?//[^\s\"'<>)]+", page.text)
        assert external == [], f"the docs page must load nothing from elsewhere: {external}"
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert len(assets) == 3 and all(a.startswith("/docs/static/") for a in assets)
        for a in assets:
            r = httpx.get(base + a, timeout=10)
            assert r.status_code == 200 and len(r.content) > 100, a
        assert "validatorUrl" in page.text and '"validatorUrl": null' in page.text
        assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 200
        assert httpx.get(f"{base}/docs/static/index.html", timeout=10).status_code == 404
        assert httpx.get(f"{base}/docs/static/..%2F..%2F__init__.py", timeout=10).status_code == 404


def test_docs_can_be_switched_off() -> None:
    with serving(_docs_listener(False)) as h:
        base = f"http://127.0.0.1:{h.ports['data']}"
        for path in ("/docs", "/openapi.json", "/docs/static/swagger-ui-bundle.js"):
            r = httpx.get(base + path, timeout=10)
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", path
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


def test_status_command_shows_the_plain_http_warning(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    dsn = new_database(pg_cluster, "tlsstatus")
    try:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump({"org_code": ORG, "database": {"dsn": dsn},
                                       "api": {"monitor": {"port": 8883, "allow_plain_http": True},
                                               "data": {"port": 8881, "host": "127.0.0.1"}}}), encoding="utf-8")
        as_json = subprocess.run(cli_cmd(cfg, "status", "--json"), capture_output=True, text=True, timeout=60,
                                 cwd=str(REPO), check=True)
        (warning,) = json.loads(as_json.stdout)["listener_warnings"]
        assert "api.monitor" in warning and "0.0.0.0:8883" in warning
        text = subprocess.run(cli_cmd(cfg, "status"), capture_output=True, text=True, timeout=60, cwd=str(REPO),
                              check=True).stdout
        assert f"警告：{warning}" in text
    finally:
        drop_database(pg_cluster, dsn)
