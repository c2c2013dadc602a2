"""Reminders API on 8881 over real HTTP on loopback: scoped keys, the list, the SSE stream with
Last-Event-ID (including a transaction that commits after a later one), and the case actions
recorded in the history with the doctor who did them."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from cdcsync.api.auth import create_key, make_scope
from cdcsync.db.cluster import LocalCluster
from cdcsync.surveil.cases import CaseStore, Evidence, Kind, Signal, Status
from cdcsync.surveil.feed import ReminderScope, parse_cursor, read_feed
from tests.api_helpers import ORG, Api, local_api, new_database, running_api

NOW = dt.datetime.now(dt.UTC)


def signal(patient: str, disease: str = "0301", *, doctor: str = "D001", dept: str = "0301",
           event: str | None = None, hours: float = 24, status: Status = Status.TO_CONFIRM) -> Signal:
    return Signal(kind=Kind.NOTIFIABLE_DIAGNOSIS, status=status, disease_code=disease, disease_name="肺结核",
                  disease_class="乙", org_code=ORG, patient_id=patient, visit_id=f"V-{patient}", doctor_id=doctor,
                  doctor_name="张医生", dept_code=dept, signal_at=NOW, due_hours=hours,
                  evidence=Evidence(event or f"e-{patient}-{disease}", "diagnosis",
                                    {"org_code": ORG, "diagnosis_id": patient}, "R1"),
                  reason="诊断属于法定传染病", pack_version="test-1")


def open_case(dsn: str, sig: Signal) -> int:
    with psycopg.connect(dsn) as conn, conn.transaction():
        return CaseStore(conn).open_or_add(sig).case.case_id


@pytest.fixture(scope="module")
def api(pg_cluster: LocalCluster) -> Iterator[Api]:
    dsn = new_database(pg_cluster, "reminders")
    with running_api(dsn, local_api(only=("data",))) as a:
        yield a


def key(api: Api, name: str, **scope: Any) -> str:
    with psycopg.connect(api.dsn) as conn:
        return create_key(conn, name, None, make_scope(["*"], ["upsert"], None, None, **scope))


def get(api: Api, k: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{api.url}{path}", params=params, headers={"Authorization": f"Bearer {k}"}, timeout=10)


def act(api: Api, k: str, case_id: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{api.url}/api/v1/cases/{case_id}/actions", json=body,
                      headers={"Authorization": f"Bearer {k}"}, timeout=10)


def test_list_scopes_and_actions_recorded_with_the_doctor(api: Api) -> None:
    hospital = key(api, "his_popup", apis=["reminders"])
    ward = key(api, "ward_0302", apis=["reminders"], depts=["0302"])
    c1 = open_case(api.dsn, signal("L1"))
    c2 = open_case(api.dsn, signal("L2", doctor="D002", dept="0302"))
    c3 = open_case(api.dsn, signal("L3"))

    # a data key is not a reminders key, and the HIS data key of the fixture neither
    assert get(api, api.good_key, "/api/v1/reminders", doctor_id="D001").json()["code"] == "SCOPE_API"
    assert get(api, hospital, "/api/v1/reminders").status_code == 400  # doctor or department required
    r = get(api, hospital, "/api/v1/reminders", doctor_id="D001")
    assert r.status_code == 200, r.text
    ids = [i["case_id"] for i in r.json()["items"]]
    assert ids == sorted([c1, c3], reverse=True)  # newest first, only this doctor's
    item = r.json()["items"][0]
    assert item["text"].startswith("【待确认】肺结核（乙类）") and "填报传染病报告卡" in item["text"]
    assert set(item["patient"]) == {"patient_id", "name", "visit_id"}
    page = get(api, hospital, "/api/v1/reminders", doctor_id="D001", limit="1").json()
    assert [i["case_id"] for i in page["items"]] == [max(c1, c3)] and page["next_before_id"] == max(c1, c3)
    page2 = get(api, hospital, "/api/v1/reminders", doctor_id="D001", limit="1", before_id=str(max(c1, c3))).json()
    assert [i["case_id"] for i in page2["items"]] == [min(c1, c3)]

    # department-scoped key: its own department only
    assert get(api, ward, "/api/v1/reminders", dept_code="0301").json()["code"] == "SCOPE_DEPT"
    assert [i["case_id"] for i in get(api, ward, "/api/v1/reminders", dept_code="0302").json()["items"]] == [c2]
    assert [i["case_id"] for i in get(api, ward, "/api/v1/reminders", doctor_id="D001").json()["items"]] == []
    assert act(api, ward, c1, {"action": "ack", "doctor_id": "D009"}).json()["code"] == "SCOPE_DEPT"

    # actions: ack, snooze (bounded), exclude (reason), reported (card number)
    assert act(api, hospital, c1, {"action": "ack"}).status_code == 400  # who did it is required
    r = act(api, hospital, c1, {"action": "ack", "doctor_id": "D001"})
    assert r.status_code == 200 and r.json()["case"]["acked_at"] is not None
    too_late = (NOW + dt.timedelta(days=2)).isoformat()
    r = act(api, hospital, c1, {"action": "snooze", "doctor_id": "D001", "until": too_late})
    assert r.status_code == 422 and r.json()["code"] == "CASE_INVALID"
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert act(api, hospital, c1, {"action": "snooze", "doctor_id": "D001", "until": soon}).status_code == 200
    listed = [i["case_id"] for i in get(api, hospital, "/api/v1/reminders", doctor_id="D001").json()["items"]]
    assert listed == [c3]  # snoozed: not to act on now
    r = act(api, hospital, c3, {"action": "exclude", "doctor_id": "D001"})
    assert r.status_code == 422 and "原因" in r.json()["message"]
    assert act(api, hospital, c3, {"action": "exclude", "doctor_id": "D001", "reason": "复查排除"}).status_code == 200
    r = act(api, ward, c2, {"action": "reported", "doctor_id": "D002", "card_no": "RC-1"})
    assert r.status_code == 200 and r.json()["case"]["status"] == "已报卡"
    assert act(api, ward, c2, {"action": "ack", "doctor_id": "D002"}).status_code == 409  # closed
    assert act(api, hospital, 999_999, {"action": "ack", "doctor_id": "D001"}).status_code == 404
    hist = api.rows("SELECT case_id, actor, actor_role, action, to_status FROM cdcsync.surveil_case_history"
                    " WHERE actor_role <> 'rules' ORDER BY history_id")
    assert hist == [(c1, "D001", "doctor", "ack", "待确认"), (c1, "D001", "doctor", "snooze", "待确认"),
                    (c3, "D001", "doctor", "exclude", "已排除"), (c2, "D002", "doctor", "reported", "已报卡")]
    closed = get(api, hospital, "/api/v1/reminders", doctor_id="D001", status="已排除").json()["items"]
    assert [i["case_id"] for i in closed] == [c3] and closed[0]["actions"] == []

    # a doctor-scoped key acts only for its doctors
    own = key(api, "doctor_d001", apis=["reminders"], doctors=["D001"])
    assert get(api, own, "/api/v1/reminders", doctor_id="D002").json()["code"] == "SCOPE_DOCTOR"
    assert act(api, own, c1, {"action": "ack", "doctor_id": "D002"}).json()["code"] == "SCOPE_DOCTOR"


class SseReader:
    """Reads an SSE stream in a thread; events are (id, event, data)."""

    def __init__(self, url: str, k: str, last_id: str | None = None, **params: Any) -> None:
        headers = {"Authorization": f"Bearer {k}"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self.resp = self.client.send(self.client.build_request("GET", url, params=params, headers=headers),
                                     stream=True)
        assert self.resp.status_code == 200, self.resp.read()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.resp.iter_lines():
                if self.stop.is_set():
                    return
                if line == "":
                    if "data" in fields:
                        with self.cond:
                            self.events.append((fields.get("id", ""), fields.get("event", ""),
                                                orjson.loads(fields["data"])))
                            self.cond.notify_all()
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.lstrip(" ")
        except httpx.HTTPError:
            return

    def wait(self, n: int, timeout: float = 20) -> list[tuple[str, str, dict[str, Any]]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, timeout), self.events
            return list(self.events)

    def close(self) -> None:
        self.stop.set()
        self.resp.close()
        self.client.close()


def test_stream_resumes_with_last_event_id_and_misses_a_late_commit(api: Api) -> None:
    hospital = key(api, "his_stream", apis=["reminders"])
    url = f"{api.url}/api/v1/reminders/stream"
    reader = SseReader(url, hospital, doctor_id="D777")
    try:
        first = open_case(api.dsn, signal("S1", doctor="D777"))
        open_case(api.dsn, signal("S9", doctor="D888"))  # another doctor's: not in this stream
        got = reader.wait(1)
        assert got[0][1] == "case" and got[0][2]["case_id"] == first and got[0][2]["change"]["action"] == "open"
        last_id = got[0][0]
    finally:
        reader.close()

    # While disconnected: transaction A takes the lower history id and stays open; B commits first.
    # A reader following history ids would pass B and never see A; the feed holds B back until A
    # has ended, then gives A and B in commit-safe order.
    scope = ReminderScope(doctor_id="D777")
    after = parse_cursor(last_id)
    assert after is not None
    slow = psycopg.connect(api.dsn)
    with slow.transaction():
        a = CaseStore(slow).open_or_add(signal("S2", doctor="D777")).case.case_id
        b = open_case(api.dsn, signal("S3", doctor="D777"))  # commits first
        with psycopg.connect(api.dsn) as conn:
            held, _ = read_feed(conn, scope, after, limit=100, now=NOW)
        assert held == []  # B waits for A
    slow.close()  # A commits now
    reader = SseReader(url, hospital, last_id, doctor_id="D777")
    try:
        seen = reader.wait(2)
        assert [e[2]["case_id"] for e in seen] == [a, b]
        a_id = seen[0][0]
    finally:
        reader.close()
    reader = SseReader(url, hospital, a_id, doctor_id="D777")  # a client that saw A reconnects
    try:
        assert [e[2]["case_id"] for e in reader.wait(1)] == [b]
    finally:
        reader.close()
    assert httpx.get(url, params={"doctor_id": "D777"}, headers={"Authorization": f"Bearer {hospital}",
                                                                   "Last-Event-ID": "junk"}).status_code == 400


def test_api_keys_cli_makes_reminders_keys(api: Api, tmp_path: Any) -> None:
    import yaml
    from click.testing import CliRunner

    from cdcsync.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"org_code": ORG, "database": {"dsn": api.dsn}}), encoding="utf-8")

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["-c", str(cfg), "api-keys", *args], catch_exceptions=False)

    added = run("add", "popup_0305", "--apis", "reminders", "--dept", "0305")
    assert added.exit_code == 0, added.output
    assert "监测预警提醒（reminders）" in added.output and "科室：0305" in added.output
    k = next(line for line in added.output.splitlines() if line.startswith("cdk_"))
    assert get(api, k, "/api/v1/reminders", dept_code="0305").status_code == 200
    assert httpx.post(f"{api.url}/api/v1/data/patient", json={"records": [{}]},
                      headers={"Authorization": f"Bearer {k}"}).json()["code"] == "SCOPE_API"
    refused = run("add", "data_only", "--apis", "data")
    assert refused.exit_code == 2 and "--tables" in refused.output
    assert run("add", "bad", "--apis", "popups").exit_code == 2
    # changing the tables keeps the key's uses and departments
    assert run("scope", "popup_0305", "--tables", "visit").exit_code == 0
    assert "科室：0305" in run("list").output
