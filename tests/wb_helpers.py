"""Shared bits of the workbench tests: a real 8884 listener on loopback, HIS secrets, signed tickets,
a patient with a diagnosis in the mirror and an open case (CaseStore.open_or_add)."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from cdcsync.api.server import ServerHandle, start_servers
from cdcsync.config import Settings
from cdcsync.db.cluster import LocalCluster
from cdcsync.surveil.cases import Case, CaseStore, Evidence, Kind, Signal, Status, standalone_store
from cdcsync.workbench.sso import HisRegistry, sign_ticket
from tests.api_helpers import ORG, drop_database, local_api, new_database, patient

DEPT_NAMES = {"0301": "感染科", "0401": "儿科", "0800": "信息科", "0900": "防保科"}


@dataclass
class Bench:
    dsn: str
    url: str
    settings: Settings
    registry: HisRegistry
    handle: ServerHandle

    def secret(self, his: str) -> bytes:
        key = self.registry.secret(his)
        assert key is not None
        return key

    def ticket(self, *, his: str = "HIS1", sub: str = "D001", name: str = "张医生", dept: str = "0301",
               role: str = "doctor", patient: str | None = "P1", visit: str | None = "V1",
               iat: int | None = None, key_of: str | None = None, **extra: Any) -> str:
        claims: dict[str, Any] = {"v": 1, "his": his, "alg": "HMAC-SM3", "sub": sub, "name": name, "dept": dept,
                                  "dept_name": DEPT_NAMES.get(dept, "门诊"), "role": role,
                                  "iat": int(time.time()) if iat is None else iat,
                                  "nonce": secrets.token_urlsafe(16), **extra}
        if patient:
            claims["patient"] = patient
        if visit:
            claims["visit"] = visit
        return sign_ticket(claims, self.secret(key_of or his))

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(query, params or None).fetchall()


def seed_patient(dsn: str, pid: str = "P1", visit: str = "V1", *, diag_id: str = "DG1",
                 birth: str = "1980-01-02", id_no: str = "110101198001020016") -> None:
    now = dt.datetime.now().replace(microsecond=0)
    rec = patient(pid, birth_date=birth, id_no=id_no, update_time=now.isoformat(), collect_time=now.isoformat())
    cols = list(rec)
    diag_time = now - dt.timedelta(hours=1)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"INSERT INTO emr.patient ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                     [rec[c] for c in cols])
        conn.execute(
            "INSERT INTO emr.diagnosis (org_code, diagnosis_id, visit_id, patient_id, visit_type_code,"
            " diagnosis_category_code, diagnosis_code, diagnosis_name, diagnosis_status_code, onset_date,"
            " diagnosis_time, modify_flag, collect_time, update_time)"
            " VALUES (%s, %s, %s, %s, 'MZ', 'XY', 'B16.9', '急性乙型病毒性肝炎', 'QZ', %s, %s, 'I', %s, %s)",
            (ORG, diag_id, visit, pid, (now - dt.timedelta(days=3)).date(), diag_time, now, now))


def open_case(dsn: str, pid: str = "P1", *, dept: str = "0301", doctor: str = "D001", disease: str = "20302",
              disease_name: str = "乙型肝炎", diag_id: str = "DG1", hours: float = 24) -> Case:
    sig = Signal(kind=Kind.NOTIFIABLE_DIAGNOSIS, status=Status.TO_CONFIRM, disease_code=disease,
                 disease_name=disease_name, disease_class="乙", org_code=ORG, patient_id=pid, visit_id="V1",
                 doctor_id=doctor, doctor_name="张医生", dept_code=dept, signal_at=dt.datetime.now(dt.UTC),
                 due_hours=hours,
                 evidence=Evidence(f"ev-{pid}-{diag_id}", "diagnosis", {"org_code": ORG, "diagnosis_id": diag_id},
                                   "R-B16"),
                 reason="诊断属于法定传染病", pack_version="test-1")
    with standalone_store(dsn) as store:
        return store.open_or_add(sig).case


def case_status(dsn: str, case_id: int) -> str:
    with psycopg.connect(dsn) as conn:
        return str(CaseStore(conn).get(case_id).status)


@contextmanager
def running_bench(cluster: LocalCluster, tmp: Path, prefix: str, **workbench: Any) -> Iterator[Bench]:
    dsn = new_database(cluster, prefix)
    settings = Settings.model_validate({
        "org_code": ORG, "database": {"dsn": dsn}, "state_dir": str(tmp / "state"), "workbench": workbench,
        "stream": {"status_interval_s": 1, "linger_ms": 50, "heartbeat_interval_s": 5},
        "destinations": [{"name": "national", "kind": "jsonl", "path": str(tmp / "national.jsonl")},
                         {"name": "provincial", "kind": "jsonl", "path": str(tmp / "provincial.jsonl")}]})
    registry = HisRegistry(settings.workbench.secrets_dir(settings.state_dir))
    registry.add("HIS1")
    registry.add("HIS2")
    handle = start_servers(settings, api=local_api(("web",)))
    try:
        yield Bench(dsn, f"http://127.0.0.1:{handle.ports['web']}", settings, registry, handle)
    finally:
        handle.stop()
        drop_database(cluster, dsn)
