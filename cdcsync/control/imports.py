"""``cdcsync codes import`` with a configuration: the imported domain becomes a new generation of
the pushed layer (cdcsync.mapping.layers), recorded in the control plane's history like a pushed
package (actor ``local:<user>``, no platform signature), so that ``config history`` shows it and
``config rollback`` can undo it. The shipped tables of the release are never rewritten."""

from __future__ import annotations

import datetime as dt
import getpass
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from cdcsync.config import Settings
from cdcsync.control import store
from cdcsync.control.kinds import generations_for
from cdcsync.control.service import LOCK_KEY
from cdcsync.crypto.sm3 import sm3
from cdcsync.mapping.domains import NATIONAL_DIR, MappingError
from cdcsync.mapping.importer import ImportResult, import_csv
from cdcsync.mapping.layers import MappingLayers


def import_into_layer(settings: Settings, domain_id: str, csv_path: Path, **options: Any) -> tuple[ImportResult, int]:
    """Import ``csv_path`` as domain ``domain_id`` into the pushed layer; (result, history record)."""
    layers = MappingLayers.from_settings(settings)
    in_force = layers.load().national
    if domain_id not in in_force:
        raise MappingError(f"没有值域 {domain_id!r}（只能替换已有值域；可用 cdcsync codes list 查看）")
    user = f"local:{getpass.getuser()}"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    gens = generations_for(settings, "value_domains")
    with psycopg.connect(settings.database.conninfo(), autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            name, gen = gens.create(f"import-{domain_id}-{stamp}")
            target = gen / NATIONAL_DIR
            target.mkdir()
            current = gens.current()
            if current is not None and (gens.path(current) / NATIONAL_DIR).is_dir():
                for f in sorted((gens.path(current) / NATIONAL_DIR).iterdir()):
                    shutil.copy2(f, target / f.name)
            result = import_csv(layers.mappings_dir, domain_id, csv_path, base=in_force[domain_id], into=target,
                                local_dir=layers.local_dir, **options)
            payload = result.path.read_bytes()
            ref = _record(conn, domain_id, stamp, payload, user, name, result)
            with conn.transaction():
                ev = store.add_event(conn, ref, "value_domains", "applied", actor=user,
                                     message=f"本机导入值域 {domain_id} 已生效", detail={"generation": name})
                store.record_current(conn, "value_domains", ref, name, "apply", ev)
                gens.switch(name)
            store.add_event(conn, ref, "value_domains", "acknowledged", actor=user, message="已生效")
            return result, ref
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _record(conn: psycopg.Connection[Any], domain_id: str, stamp: str, payload: bytes, user: str, generation: str,
            result: ImportResult) -> int:
    row = conn.execute(
        "INSERT INTO cdcsync.config_package (package_id, kind, org_code, created_at, payload_sm3, payload,"
        " request_sm3, source) VALUES (%s, 'value_domains', '', now(), %s, %s, %s, %s) RETURNING id",
        (f"import-{domain_id}-{stamp}", sm3(payload).hex(), payload, sm3(payload).hex(), user)).fetchone()
    assert row is not None
    ref = int(row[0])
    for state, message, detail in (
            ("received", f"本机导入 {result.encoding} 文件", {}),
            ("staged", f"已暂存为 {generation}", {"generation": generation, "codes": len(result.domain)}),
            ("checked", "检查完成" if not result.dangling else f"{len(result.dangling)} 条本院对照失效",
             {"dangling_local_entries": _dangling(result.dangling)})):
        store.add_event(conn, ref, "value_domains", state, actor=user, message=message, detail=detail)
    return ref


def _dangling(lines: Sequence[str]) -> list[str]:
    return list(lines)[:200]
