"""Data API (8881) through real HTTP (uvicorn on loopback) against a real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from cdcsync.db.cluster import LocalCluster
from tests.api_helpers import ORG, Api, drop_database, local_api, new_database, patient, running_api
from tests.cdc_util import wait_for

EVIL = "'); DROP TABLE emr.patient; --"


@pytest.fixture(scope="module")
def api(pg_cluster: LocalCluster) -> Iterator[Api]:
    dsn = new_database(pg_cluster, "dapi")
    try:
        with running_api(dsn, local_api(("data",), max_body_bytes=64 * 1024, max_batch_records=50)) as a:
            yield a
    finally:
        drop_database(pg_cluster, dsn)


def _post(api: Api, table: str, body: object, key: str | None = None, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or api.good_key}"}
    return httpx.post(f"{api.url}/api/v1/data/{table}", json=body, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def test_valid_batch_lands_in_the_mirror_and_repost_is_idempotent(api: Api) -> None:
    recs = [patient("A1"), patient("A2", sex_code="F", id_no="110101198001020024")]
    r = _post(api, "patient", {"records": recs})
    assert r.status_code == 200, r.text
    assert r.json() == {"table": "patient", "received": 2, "inserted": 2, "updated": 0, "unchanged": 0}
    rows = api.rows("SELECT patient_id, sex_code, birth_date::text, register_time::text FROM emr.patient"
                    " WHERE patient_id IN ('A1', 'A2') ORDER BY 1")
    # local codes stored as the HIS sent them; the stream maps them
    assert rows == [("A1", "M", "1980-01-02", "2024-05-06 08:30:00"), ("A2", "F", "1980-01-02", "2024-05-06 08:30:00")]
    (xmin_before,) = api.rows("SELECT xmin::text FROM emr.patient WHERE patient_id = 'A1'")[0]

    again = _post(api, "patient", {"records": recs})
    assert again.json()["unchanged"] == 2
    (xmin_after,) = api.rows("SELECT xmin::text FROM emr.patient WHERE patient_id = 'A1'")[0]
    assert xmin_after == xmin_before, "an identical re-post must not touch the row (no new CDC event)"

    changed = _post(api, "patient", {"records": [patient("A1", name="李四")]}, key=None)
    assert changed.json()["updated"] == 1
    assert api.rows("SELECT name FROM emr.patient WHERE patient_id = 'A1'") == [("李四",)]


def test_invalid_batch_names_every_bad_record_and_field_and_writes_nothing(api: Api) -> None:
    recs = [
        patient("B0"),  # valid, must not be written either
        patient("B1", birth_date="1980-13-40", phone="12"),
        patient("B2", sex_code=None, bogus="x"),
        "not an object",
        patient("B4", sex_code="ZZ"),  # unmapped local code: accepted here, the stream quarantines it
    ]
    r = _post(api, "patient", {"records": recs})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "VALIDATION_FAILED" and body["failed_indexes"] == [1, 2, 3]
    # people count from one, programs keep the zero-based index
    assert "第 2、3、4 条记录未通过校验" in body["message"]
    assert any(e["index"] == 3 and e["message"] == "第 4 条记录应为 JSON 对象" for e in body["errors"])
    got = {(e["index"], e["field"], e["rule_id"]) for e in body["errors"]}
    assert {(1, "birth_date", "TYP001"), (1, "phone", "FMT001"), (2, "sex_code", "REQ001"),
            (2, "bogus", "STR001"), (3, None, "STR002")} <= got
    assert all(e["index"] != 4 for e in body["errors"])
    assert "张三" not in r.text, "messages never echo patient data"
    assert api.rows("SELECT count(*) FROM emr.patient WHERE patient_id LIKE 'B%'") == [(0,)]


def test_unmapped_local_code_is_accepted_like_the_database_path(api: Api) -> None:
    r = _post(api, "patient", {"records": [patient("U1", sex_code="ZZ", id_type_code="XX", id_no="whatever")]})
    assert r.status_code == 200, r.text
    assert api.rows("SELECT sex_code, id_type_code FROM emr.patient WHERE patient_id = 'U1'") == [("ZZ", "XX")]


def test_keys_missing_wrong_revoked(api: Api) -> None:
    url = f"{api.url}/api/v1/data/patient"
    body = {"records": [patient("K1")]}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401 and missing.json()["code"] == "AUTH_MISSING"
    wrong = httpx.post(url, json=body, headers={"X-Api-Key": api.good_key[:-4] + "AAAA"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "AUTH_INVALID"
    garbage = httpx.post(url, json=body, headers={"Authorization": "Bearer nonsense"})
    assert garbage.status_code == 401
    revoked = httpx.post(url, json=body, headers={"Authorization": f"Bearer {api.revoked_key}"})
    assert revoked.status_code == 403 and revoked.json()["code"] == "AUTH_REVOKED"
    ok = httpx.post(url, json=body, headers={"X-Api-Key": api.good_key})
    assert ok.status_code == 200
    assert api.rows("SELECT count(*) FROM emr.patient WHERE patient_id = 'K1'") == [(1,)]


def test_size_and_batch_limits(api: Api) -> None:
    big = _post(api, "patient", {"records": [patient(f"S{i}", current_addr_detail="地" * 190) for i in range(200)]})
    assert big.status_code == 413 and big.json()["code"] == "BODY_TOO_LARGE"
    many = _post(api, "patient", {"records": [patient(f"S{i}") for i in range(51)]})
    assert many.status_code == 413 and many.json()["code"] == "BATCH_TOO_LARGE"
    bad_json = httpx.post(f"{api.url}/api/v1/data/patient", content=b"{not json",
                          headers={"X-Api-Key": api.good_key})
    assert bad_json.status_code == 400 and bad_json.json()["code"] == "INVALID_JSON"
    assert api.rows("SELECT count(*) FROM emr.patient WHERE patient_id LIKE 'S%'") == [(0,)]


def test_sql_metacharacters_and_supplementary_characters_stored_verbatim(api: Api) -> None:
    name = "𠮷" + EVIL[:20]
    r = _post(api, "patient", {"records": [patient(EVIL, name=name, current_addr_detail=EVIL + "𠮷野家")]})
    assert r.status_code == 200, r.text
    assert api.rows("SELECT name, current_addr_detail FROM emr.patient WHERE patient_id = %s", EVIL) == [
        (name, EVIL + "𠮷野家")]
    assert api.rows("SELECT to_regclass('emr.patient') IS NOT NULL") == [(True,)]


def test_delete_by_primary_key(api: Api) -> None:
    _post(api, "patient", {"records": [patient("D1"), patient("D2")]})
    url = f"{api.url}/api/v1/data/patient"
    hdr = {"X-Api-Key": api.good_key}
    keys = [{"org_code": ORG}, {"org_code": ORG, "patient_id": "D1", "x": 1}]
    bad = httpx.request("DELETE", url, json={"keys": keys}, headers=hdr)
    assert bad.status_code == 400
    assert {(e["index"], e["field"]) for e in bad.json()["errors"]} == {(0, "patient_id"), (1, "x")}
    r = httpx.request("DELETE", url, json={"keys": [{"org_code": ORG, "patient_id": "D1"},
                                                    {"org_code": ORG, "patient_id": "nope"}]}, headers=hdr)
    assert r.status_code == 200 and r.json() == {"table": "patient", "received": 2, "deleted": 1, "not_found": 1}
    assert api.rows("SELECT patient_id FROM emr.patient WHERE patient_id LIKE 'D%'") == [("D2",)]


def test_errors_are_json_without_traces_and_openapi_has_chinese_fields(api: Api) -> None:
    nf = httpx.get(f"{api.url}/api/v1/data/nosuch")
    assert nf.status_code == 404 and nf.json()["code"] == "NOT_FOUND"
    doc = httpx.get(f"{api.url}/openapi.json").json()
    rec = doc["components"]["schemas"]["PatientRecord"]
    assert rec["properties"]["sex_code"]["description"].startswith("性别代码")
    assert len([p for p in doc["paths"] if p.startswith("/api/v1/data/")]) == 19
    assert httpx.get(f"{api.url}/docs").status_code == 200


def test_request_log_has_no_body_values(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cdcsync.api"):
        _post(api, "patient", {"records": [patient("L1", name="王秘密")]})
        _post(api, "patient", {"records": [patient("L2", phone="bad", name="王秘密")]})
        # the access line is written once the response has gone out, so it may trail the client
        text = wait_for(lambda: caplog.text if " 400 " in caplog.text else "", timeout=10,
                        what="the access log line of the refused request")
    assert "/api/v1/data/patient" in text and "client=his" in text and " 400 " in text
    assert "王秘密" not in text and "110101198001020016" not in text and api.good_key not in text


def test_batch_reaches_the_sink_through_cdc(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    from cdcsync.engine.daemon import drain
    from tests.api_helpers import settings_for
    from tests.cdc_util import read_events

    dsn = new_database(pg_cluster, "dapicdc")
    settings = settings_for(dsn, tmp_path / "state",
                            destinations=[{"name": "t", "kind": "jsonl", "path": str(tmp_path / "ev.jsonl")}])
    try:
        drain(settings)  # slot + initial snapshot of the empty mirror
        with running_api(dsn, local_api(("data",))) as a:
            r = _post(a, "patient", {"records": [patient("C1"), patient("C2", name="𠮷" + EVIL)]})
            assert r.status_code == 200, r.text
        drain(settings)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM cdcsync.quarantine").fetchone() == (0,)
    finally:
        drop_database(pg_cluster, dsn)
    events = [e for e in read_events(tmp_path / "ev.jsonl") if e["source"]["table"] == "patient"]
    assert sorted(e["after"]["patient_id"] for e in events) == ["C1", "C2"]
    c2 = next(e for e in events if e["after"]["patient_id"] == "C2")
    assert c2["after"]["name"] == "𠮷" + EVIL
    # mapped by the validation stage once the engine uses it; the local code travels either way
    assert c2["after"].get("sex_code_local", c2["after"]["sex_code"]) == "M"


def test_api_keys_cli_add_list_revoke(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    dsn = new_database(pg_cluster, "dapikeys")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"org_code": ORG, "database": {"dsn": dsn}}), encoding="utf-8")
    code = ("from cdcsync.cli import main; from cdcsync.api.cli import COMMANDS\n"
            "for c in COMMANDS:\n    main.commands.setdefault(c.name, c)\nmain(prog_name='cdcsync')")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code, "-c", str(cfg), *args], capture_output=True, text=True,
                              timeout=60)

    added = cli("api-keys", "add", "lis", "--tables", "*", "--ops", "upsert,delete", "--note", "检验科LIS")
    assert added.returncode == 0, added.stderr
    key = next(line for line in added.stdout.splitlines() if line.startswith("cdk_"))
    # name taken: one clear line, no traceback
    assert cli("api-keys", "add", "lis", "--tables", "*", "--ops", "upsert").returncode == 2
    listed = cli("api-keys", "list")
    assert "lis" in listed.stdout and "在用" in listed.stdout and key not in listed.stdout
    with running_api(dsn, local_api(("data",))) as a:
        assert _post(a, "patient", {"records": [patient("CLI1")]}, key=key).status_code == 200
        assert cli("api-keys", "revoke", "lis").returncode == 0
        assert _post(a, "patient", {"records": [patient("CLI2")]}, key=key).status_code == 403
    assert "已吊销" in cli("api-keys", "list").stdout
    missing = cli("api-keys", "revoke", "nobody")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT key_hash FROM cdcsync.api_key WHERE name = 'lis'").fetchone()
    assert stored and key.encode() not in bytes(stored[0])
