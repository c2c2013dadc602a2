"""``cdcsync doctor``."""

from __future__ import annotations

import sys

import click
import orjson

from cdcsync.cli_context import AppContext, pass_app

_MARK = {"ok": "正常", "warning": "警告", "failure": "失败", "skipped": "跳过"}


@click.command("doctor")
@click.option("--json", "json_out", is_flag=True, help="以 JSON 输出")
@pass_app
def doctor_cmd(app: AppContext, json_out: bool) -> None:
    """上线前与排障时的全面检查（退出码 0 正常 / 1 警告 / 2 失败）。

    检查数据库设置、账号权限、发布、复制槽、磁盘、端口、密钥与证书、平台连通与时钟、代码对照、备份。
    """
    from cdcsync.ops.doctor import as_json, exit_code, run_doctor

    findings = run_doctor(app.settings)
    if json_out:
        click.echo(orjson.dumps(as_json(findings), option=orjson.OPT_INDENT_2).decode())
        sys.exit(exit_code(findings))
    width = max(len(f.title) for f in findings) + 2
    for f in findings:
        click.echo(f"[{_MARK[f.level]}] {f.title:<{width}}{f.detail}")
        if f.level in ("warning", "failure"):
            click.echo(f"        说明：{f.explain}")
            click.echo(f"        处理：{f.fix}")
    counts = {lvl: sum(1 for f in findings if f.level == lvl) for lvl in _MARK}
    click.echo(f"共 {len(findings)} 项：正常 {counts['ok']}，警告 {counts['warning']}，失败 {counts['failure']}，"
               f"跳过 {counts['skipped']}")
    sys.exit(exit_code(findings))


COMMANDS = [doctor_cmd]
