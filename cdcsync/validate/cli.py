"""``cdcsync validate``: check the rows already in the mirror against the dataset spec (before go-live)."""

from __future__ import annotations

import sys

import click

from cdcsync.cli_context import (
    AppContext,
    connect_autocommit,
    conninfo,
    db_errors,
    dumps_text,
    pass_app,
)
from cdcsync.mapping.cli import mapping_layers

# --- validate -----------------------------------------------------------------------------------


@click.command("validate")
@click.option("--table", "-t", "tables", multiple=True, help="只检查这些表（可重复）")
@click.option("--limit", type=int, help="每张表最多检查行数")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@click.option("--dsn", help="数据库连接串（默认取配置文件 database.dsn）")
@click.option("--mappings-dir", type=click.Path(file_okay=False), help="值域代码目录（默认取配置）")
@pass_app
def validate_cmd(app: AppContext, tables: tuple[str, ...], limit: int | None, as_json: bool, dsn: str | None,
                 mappings_dir: str | None) -> None:
    """校验镜像库中已有的数据（上线前由 HIS 厂商执行）：按表、按规则汇总，附示例主键，不显示数据内容。
    有不合格记录时退出码为 1。"""
    from cdcsync.spec import load_spec
    from cdcsync.validate.bulk import estimate_rows, format_text, validate_table
    from cdcsync.validate.reload import build_validators

    spec = load_spec()
    for t in tables:
        if not spec.has_table(t):
            raise click.BadParameter(f"数据集规范中没有表 {t!r}（可选：{', '.join(spec.table_names)}）",
                                     param_hint="--table")
    names = list(tables) or list(spec.table_names)
    layers = mapping_layers(app, mappings_dir, None)
    rules = build_validators(layers.mappings_dir, layers.hospital, spec, pushed_dir=layers.pushed_dir,
                             local_dir=layers.local_dir)
    summaries = []
    with db_errors(), connect_autocommit(conninfo(app, dsn)) as conn:
        tty = sys.stderr.isatty() and not as_json
        if tty:
            total = estimate_rows(conn, names)
            if limit is not None:
                total = min(total, limit * len(names))
            with click.progressbar(length=max(total, 1), label="校验中", file=sys.stderr) as bar:
                for t in names:
                    summaries.append(validate_table(conn, rules, t, limit, progress=bar.update))
        else:
            for t in names:
                summaries.append(validate_table(conn, rules, t, limit))
    failed = sum(s.failed for s in summaries)
    if as_json:
        click.echo(dumps_text({"mapping_version": rules.mapping_version, "spec_version": rules.spec_version,
                           "rows": sum(s.rows for s in summaries), "failed": failed,
                           "tables": [s.as_dict() for s in summaries]}))
    else:
        click.echo(format_text(summaries, spec))
    sys.exit(1 if failed else 0)
