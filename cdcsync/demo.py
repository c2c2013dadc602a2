"""``cdcsync demo``: the embedded default. A private PostgreSQL cluster, the schema, the two
reference platforms, a synthetic hospital day streamed to both, and the status page, all under
one directory (``./.cdcsync`` by default)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import psycopg
import yaml

from cdcsync.api.server import start_servers
from cdcsync.config import Settings, load_settings
from cdcsync.crypto.keys import write_keypair
from cdcsync.db.cluster import ClusterError, LocalCluster
from cdcsync.db.migrate import apply_migrations
from cdcsync.demo_story import (
    closing_summary,
    explain,
    import_export,
    live_phase,
    phase_shares,
    share_line,
    timeliness_snapshot,
)
from cdcsync.engine.daemon import drain, run
from cdcsync.recon.report import render_html
from cdcsync.synth.nndrs_export import Planted, planted_path, read_planted
from cdcsync.synth.site import backfill_day
from cdcsync.upstream_sim.runner import SimHandle, start_subprocess
from cdcsync.validate.compiler import beijing_now

DEMO_DB = "emr"
DEMO_ORG_CODE = "12110000400000000X"
PLATFORMS = {"national": "国家平台", "provincial": "省级平台"}


@dataclass(frozen=True)
class DemoLayout:
    """Where the demo keeps things. The cluster may live elsewhere when the run-as user cannot
    reach ``base`` (root's home is 0700): the chosen path is remembered in ``pgdir``."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "demo.yaml"

    @property
    def pgdir_file(self) -> Path:
        return self.base / "pgdir"

    def cluster_dir(self) -> Path:
        if self.pgdir_file.exists():
            return Path(self.pgdir_file.read_text().strip())
        return self.base / "pg"

    def fallback_cluster_dir(self) -> Path:
        digest = hashlib.sha256(str(self.base.resolve()).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"cdcsync-demo-{digest}" / "pg"


def start_cluster(layout: DemoLayout) -> LocalCluster:
    layout.base.mkdir(parents=True, exist_ok=True)
    pgdir = layout.cluster_dir()
    cluster = LocalCluster(pgdir)
    try:
        cluster.init()
    except ClusterError:
        if layout.pgdir_file.exists() or cluster.user is None:
            raise
        # The run-as user cannot reach ./.cdcsync (e.g. under /root): keep the cluster in /var/tmp.
        pgdir = layout.fallback_cluster_dir()
        pgdir.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(pgdir.parent, 0o755)
        cluster = LocalCluster(pgdir)
        cluster.init()
    layout.pgdir_file.write_text(str(pgdir))
    cluster.start()
    return cluster


def ensure_database(cluster: LocalCluster) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {DEMO_DB}")
    return cluster.dsn(DEMO_DB)


@dataclass(frozen=True)
class Platforms:
    """The two reference platforms (national, provincial) and the hospital's key pair."""

    handles: dict[str, SimHandle]
    hospital_key: Path

    def stop(self) -> None:
        for handle in self.handles.values():
            handle.stop()


def start_platforms(layout: DemoLayout) -> Platforms:
    keys = layout.base / "keys"
    key, pub = keys / "hospital.key", keys / "hospital.pub"
    if not key.exists():
        keys.mkdir(parents=True, exist_ok=True)
        write_keypair(keys, "hospital")
    handles: dict[str, SimHandle] = {}
    try:
        for name in PLATFORMS:
            data_dir = layout.base / "platforms" / name
            handles[name] = start_subprocess(data_dir, hospital_pubs=[pub], log_file=data_dir.parent / f"{name}.log")
    except BaseException:
        for handle in handles.values():
            handle.stop()
        raise
    return Platforms(handles, key)


def write_config(layout: DemoLayout, dsn: str, platforms: Platforms, web_port: int) -> None:
    destinations = [
        {
            "name": name,
            "kind": "http",
            "url": handle.url,
            "ca_bundle": str(handle.ca_bundle),
            "hospital_key": str(platforms.hospital_key),
            "platform_public_key": str(handle.platform_pub),
        }
        for name, handle in platforms.handles.items()
    ]
    config = {
        "org_code": DEMO_ORG_CODE,
        "hospital": "example",
        "state_dir": str(layout.base),
        "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 100, "heartbeat_interval_s": 10},
        "destinations": destinations,
        "api": {
            "data": {"host": "127.0.0.1", "port": 0},
            "monitor": {"host": "127.0.0.1", "port": 0},
            "web": {"host": "127.0.0.1", "port": web_port},
        },
    }
    header = "# cdcsync demo 配置（由 cdcsync demo 生成，可直接用于 cdcsync -c 本文件 …）\n"
    layout.config.write_text(header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False))


def save_status_page(settings: Settings, target: Path) -> None:
    """Serve the status page once on a free port and keep what a doctor's browser would see."""
    off = {"enabled": False}
    api = settings.api.model_copy(update={
        "data": settings.api.data.model_copy(update=off),
        "monitor": settings.api.monitor.model_copy(update=off),
        "web": settings.api.web.model_copy(update={"port": 0}),
    })
    servers = start_servers(settings, api=api)
    try:
        url = f"http://127.0.0.1:{servers.ports['web']}/status.html"
        target.write_bytes(httpx.get(url, timeout=10).raise_for_status().content)
    finally:
        servers.stop()


def _surveil_cases(settings: Settings) -> None:
    """The day was generated before the rules consumer's slot existed: run the rules over it once
    (``rules replay --apply``; a second demo run opens nothing twice); ``--serve`` streams on."""
    import datetime as dt

    from cdcsync.surveil.replay_cli import replay

    res = replay(settings.database.conninfo(), settings, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), None, True)
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FILTER (WHERE status IN ('待确认', '待确诊', '待核查')), count(*)"
                           " FROM cdcsync.surveil_case").fetchone()
    n_open, total = (int(row[0]), int(row[1])) if row else (0, 0)
    click.echo(f"    监测预警：规则包 {res['pack_version']}，本次生成病例 {len(res['opened'])} 例；"
               f"共 {total} 例，未结 {n_open} 例（见 cases list）")


def _has_rows(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM emr.visit)").fetchone() == (True,)


def reconciliation(dsn: str, settings: Settings, day: dt.date) -> dict[str, Any]:
    """The day's reconciliation report, as ``cdcsync reconcile --date`` builds it."""
    from cdcsync.mapping.domains import load_code_tables
    from cdcsync.recon.codemap import sync_reference
    from cdcsync.recon.report import build_report

    with psycopg.connect(dsn, autocommit=True) as conn:
        sync_reference(conn, load_code_tables(settings.mappings_dir, settings.hospital, strict=False))
        return build_report(conn, day)


def _quarantined(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT destination, count(*) FROM cdcsync.quarantine WHERE status = 'held'"
                            " GROUP BY destination ORDER BY destination").fetchall()
    return {str(d): int(n) for d, n in rows}


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".cdcsync"),
              show_default=True, help="演示数据目录")
@click.option("--patients", type=int, default=300, show_default=True, help="合成医院一天的患者数")
@click.option("--seed", type=int, default=20261125, show_default=True, help="随机种子")
@click.option("--serve", is_flag=True, help="同步完成后继续运行（同步服务、参考平台、状态页），直到 Ctrl-C")
@click.option("--web-port", type=int, default=8884, show_default=True, help="--serve 时状态页的端口")
@click.option("--stop", is_flag=True, help="停止演示用的 PostgreSQL 集群")
@click.option("--live-seconds", type=click.FloatRange(min=0), default=12.0, show_default=True,
              help="实时阶段的时长（秒；0 表示不做实时阶段）")
@click.option("--live-rate", type=click.FloatRange(min=1), default=150.0, show_default=True,
              help="实时阶段每秒写入的行数")
@click.pass_context
def demo(ctx: click.Context, data_dir: Path, patients: int, seed: int, serve: bool, web_port: int,
         stop: bool, live_seconds: float, live_rate: float) -> None:
    """一条命令体验 cdcsync：私有 PostgreSQL、合成医院数据、参考平台、同步流水线与状态页。"""
    from cdcsync.extras import require_extra

    layout = DemoLayout(data_dir.absolute())
    if not stop:
        require_extra("sim")  # the reference platforms and the synthetic hospital
    if stop:
        if not layout.pgdir_file.exists():
            click.echo(f"{layout.base} 下没有演示集群，无需停止。")
            return
        LocalCluster(layout.cluster_dir()).stop()
        click.echo("演示集群已停止。数据仍保留在：" + str(layout.cluster_dir()))
        return

    if logging.getLogger().level > logging.DEBUG:
        for name in ("cdcsync", "uvicorn"):  # the steps below say what happens
            logging.getLogger(name).setLevel(logging.WARNING)
    click.echo("1/7 启动私有 PostgreSQL 集群（wal_level=logical）…")
    cluster = start_cluster(layout)
    click.echo(f"    数据目录 {cluster.datadir}，端口 {cluster.port}")
    dsn = ensure_database(cluster)

    click.echo("2/7 建立镜像库结构（emr.*）与内部状态表（cdcsync.*）…")
    result = apply_migrations(dsn)
    click.echo(f"    新执行迁移 {len(result.applied)} 个，已存在 {len(result.skipped)} 个")

    click.echo("3/7 启动参考平台（国家平台、省级平台：HTTPS + SM2/SM4 数字信封）…")
    platforms = start_platforms(layout)
    try:
        for name, handle in platforms.handles.items():
            click.echo(f"    {PLATFORMS[name]} {handle.url}  接收库 {handle.data_dir}/received.sqlite")
        write_config(layout, dsn, platforms, web_port)
        settings = load_settings(layout.config)

        day = backfill_day(beijing_now())  # the reconciled day; the live phase writes today's visits
        click.echo(f"4/7 回填：合成医院昨天（{day.isoformat()}）的就诊（{patients} 名患者，种子 {seed}）"
                   "一次写入镜像库…")
        fresh = not _has_rows(dsn)
        if not fresh:
            click.echo(f"    镜像库中已有数据，跳过生成（重新开始请删除 {layout.base}）")
        else:
            from cdcsync.synth.cli import gen

            ctx.invoke(gen, dsn=dsn, seed=seed, patients=patients, org_code=DEMO_ORG_CODE, hospital="example",
                       start=dt.datetime.combine(day, dt.time()))

        click.echo("5/7 同步回填的数据：校验、代码映射、加密签名后上报两个平台，直到追平…")
        before = timeliness_snapshot(dsn, day)
        drain(settings)
        after_backfill = timeliness_snapshot(dsn, day)
        for name, handle in platforms.handles.items():
            tables = handle.stats().get("tables", {})
            click.echo(f"    {PLATFORMS[name]}已接收 {sum(tables.values())} 个事件（{len(tables)} 张表）")
        held = ", ".join(f"{PLATFORMS[d]} {n} 条" for d, n in _quarantined(dsn).items()) or "0 条"
        click.echo(f"    隔离区待处理：{held}（合成数据中故意放入的不合规记录，见 quarantine list）")
        click.echo("    " + share_line("回填部分实时类数据及时率", phase_shares(before, after_backfill), "realtime"))

        if fresh and live_seconds > 0:
            click.echo(f"6/7 实时阶段：{live_seconds:g} 秒内按业务发生的时刻写入新就诊"
                       f"（{live_rate:g} 行/秒），同时上报…")
            today = beijing_now().date()
            before_live = timeliness_snapshot(dsn, today)
            live = live_phase(settings, dsn, DEMO_ORG_CODE, seconds=live_seconds, rate=live_rate, seed=seed,
                              patients=patients)
            after_live = timeliness_snapshot(dsn, today)
            click.echo(f"    写入 {live.rows} 行（{live.transactions} 次就诊），已全部上报")
            live_shares = phase_shares(before_live, after_live)
            click.echo("    " + share_line("实时阶段实时类数据及时率", live_shares, "realtime"))
        else:
            click.echo("6/7 实时阶段：跳过")

        click.echo("7/7 大疫情网导出（含故意放入的差异）导入并对账…")
        export = layout.base / "nndrs_export.csv"
        planted: Planted | None = None
        if fresh:
            planted, imported = import_export(settings, dsn, DEMO_ORG_CODE, export, day, seed)
            click.echo(f"    {planted.summary()}")
            click.echo(f"    导入：{imported.text().splitlines()[0]}")
        elif export.exists() and planted_path(export).exists():
            planted = read_planted(export)
        _surveil_cases(settings)
        save_status_page(settings, layout.base / "status.html")
        report = reconciliation(dsn, settings, day)
        explanations = explain(report, planted)
        report["demo_explanations"] = explanations
        html_report = layout.base / "reconcile.html"
        html_report.write_text(render_html(report), encoding="utf-8")

        cli = f"cdcsync -c {layout.config}"
        stop_hint = "cdcsync demo --stop" + ("" if data_dir == Path(".cdcsync") else f" --data-dir {data_dir}")
        click.echo("")
        click.echo("完成。可以查看：")
        click.echo(f"  配置文件     {layout.config}")
        click.echo(f"  镜像数据库   psql \"{dsn}\"   （\\dt+ emr.*  查看表及中文注释）")
        click.echo(f"  平台接收库   {layout.base}/platforms/<national|provincial>/received.sqlite")
        click.echo(f"  状态页快照   {layout.base}/status.html")
        click.echo(f"  运行状态     {cli} status")
        click.echo(f"  隔离区       {cli} quarantine list")
        click.echo(f"  监测预警病例 {cli} cases list   （提醒接口见 docs/api.md）")
        click.echo(f"  每日对账     {cli} reconcile --date {day.isoformat()}   （HTML：{html_report}）")
        click.echo(f"  持续运行     cdcsync demo --serve   （状态页 http://127.0.0.1:{web_port}/status.html）")
        click.echo(f"  停止集群     {stop_hint}")
        click.echo("")
        for line in closing_summary(report, explanations):
            click.echo(line)
        if serve:
            click.echo("")
            click.echo(f"持续运行中：状态页 http://127.0.0.1:{web_port}/status.html  （Ctrl-C 退出）")
            run(settings)
    finally:
        platforms.stop()
