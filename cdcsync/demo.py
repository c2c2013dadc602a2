"""``cdcsync demo``: the embedded default. A private PostgreSQL cluster, the schema, a synthetic
hospital day, and the pipeline, all under one directory (``./.cdcsync`` by default)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg
import yaml

from cdcsync.db.cluster import ClusterError, LocalCluster
from cdcsync.db.migrate import apply_migrations

DEMO_DB = "emr"
DEMO_ORG_CODE = "12110000400000000X"


@dataclass(frozen=True)
class DemoLayout:
    """Where the demo keeps things. The cluster may live elsewhere when the run-as user cannot
    reach ``base`` (root's home is 0700): the chosen path is remembered in ``pgdir``."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "demo.yaml"

    @property
    def out(self) -> Path:
        return self.base / "out"

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


def write_config(layout: DemoLayout, dsn: str) -> None:
    config = {
        "org_code": DEMO_ORG_CODE,
        "hospital": "example",
        "state_dir": str(layout.base),
        "database": {"dsn": dsn},
        "stream": {"status_interval_s": 1, "linger_ms": 100, "heartbeat_interval_s": 10},
        "destinations": [
            {"name": "national", "kind": "jsonl", "path": str(layout.out / "national.jsonl")},
            {"name": "provincial", "kind": "jsonl", "path": str(layout.out / "provincial.jsonl")},
        ],
    }
    layout.out.mkdir(parents=True, exist_ok=True)
    header = "# cdcsync demo 配置（由 cdcsync demo 生成，可直接用于 cdcsync -c 本文件 …）\n"
    layout.config.write_text(header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False))


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".cdcsync"),
              show_default=True, help="演示数据目录")
@click.option("--patients", type=int, default=300, show_default=True, help="合成医院一天的患者数")
@click.option("--seed", type=int, default=20261125, show_default=True, help="随机种子")
@click.option("--stop", is_flag=True, help="停止演示用的 PostgreSQL 集群")
@click.pass_context
def demo(ctx: click.Context, data_dir: Path, patients: int, seed: int, stop: bool) -> None:
    """一条命令体验 cdcsync：私有 PostgreSQL、合成医院数据、同步流水线。"""
    layout = DemoLayout(data_dir.absolute())
    if stop:
        if not layout.pgdir_file.exists():
            click.echo(f"{layout.base} 下没有演示集群，无需停止。")
            return
        LocalCluster(layout.cluster_dir()).stop()
        click.echo("演示集群已停止。数据仍保留在：" + str(layout.cluster_dir()))
        return

    click.echo("1/4 启动私有 PostgreSQL 集群（wal_level=logical）…")
    cluster = start_cluster(layout)
    click.echo(f"    数据目录 {cluster.datadir}，端口 {cluster.port}")
    dsn = ensure_database(cluster)

    click.echo("2/4 建立镜像库结构（emr.*）与内部状态表（cdcsync.*）…")
    result = apply_migrations(dsn)
    click.echo(f"    新执行迁移 {len(result.applied)} 个，已存在 {len(result.skipped)} 个")
    write_config(layout, dsn)

    click.echo(f"3/4 生成合成医院的一天（{patients} 名患者，种子 {seed}）…")
    if _has_rows(dsn):
        click.echo("    镜像库中已有数据，跳过生成（重新开始请删除 " + str(layout.base) + "）")
    else:
        from cdcsync.synth.cli import gen

        ctx.invoke(gen, dsn=dsn, seed=seed, patients=patients, org_code=DEMO_ORG_CODE, hospital="example")

    click.echo("4/4 运行同步流水线，直到追平…")
    delivered = run_until_caught_up(layout)
    for dest, n in delivered.items():
        click.echo(f"    {dest}: 已投递 {n} 个事件")

    click.echo("")
    click.echo("完成。可以查看：")
    click.echo(f"  配置文件     {layout.config}")
    click.echo(f"  镜像数据库   psql \"{dsn}\"   （\\dt+ emr.*  查看表及中文注释）")
    click.echo(f"  投递结果     {layout.out}/")
    click.echo(f"  运行状态     cdcsync -c {layout.config} status")
    click.echo("  停止集群     cdcsync demo --stop")


def _has_rows(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM emr.visit)").fetchone() == (True,)


def run_until_caught_up(layout: DemoLayout) -> dict[str, int]:
    try:
        from cdcsync.daemon import drain
    except ImportError:
        click.echo("    （本版本尚未包含同步引擎，跳过）")
        return {}
    from cdcsync.config import load_settings

    return drain(load_settings(layout.config))
