"""``cdcsync backup run|verify|list|restore|prune|keygen|advance-wal``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from cdcsync.cli_context import AppContext, pass_app


@click.group("backup")
def backup_group() -> None:
    """备份：逻辑备份与物理备份、自动校验（试恢复）、恢复、保留策略。"""


def _config_path(app: AppContext) -> Path | None:
    return Path(app.config_path) if app.config_path else None


@backup_group.command("run")
@click.option("--kind", type=click.Choice(["logical", "physical", "all"]), default=None,
              help="logical：pg_dump 逻辑备份与配置/密钥归档；physical：pg_basebackup；all：两者"
                   "（默认取 backup.default_kind）")
@click.option("--no-verify", is_flag=True, help="不在备份后立即校验（不建议）")
@click.option("--no-prune", is_flag=True, help="不按保留策略清理旧备份")
@pass_app
def run_cmd(app: AppContext, kind: str | None, no_verify: bool, no_prune: bool) -> None:
    """执行一次备份，随后自动校验（摘要、pg_verifybackup、试恢复并核对行数），再按保留策略清理。"""
    from cdcsync.ops.backup.catalog import backup_dir, list_backups
    from cdcsync.ops.backup.retention import prune
    from cdcsync.ops.backup.run import take_backup
    from cdcsync.ops.backup.verify import verify_and_reload

    settings = app.settings
    backup = take_backup(settings, kind or settings.backup.default_kind, _config_path(app))
    click.echo(f"备份完成：{backup.id}（{backup.manifest.kind}，{backup.manifest.size / 1024 / 1024:.1f} MB）"
               f"，目录 {backup.path}")
    if backup.manifest.secrets == "excluded":
        click.echo("提示：按配置（backup.include_secrets: false）未备份私钥与口令文件", err=True)
    exit_code = 0
    if not no_verify:
        backup = verify_and_reload(settings, backup)
        exit_code = _print_verification(backup.verification or {})
    if not no_prune:
        cfg = settings.backup
        for removed in prune(list_backups(backup_dir(settings)), cfg.keep_daily, cfg.keep_weekly):
            click.echo(f"按保留策略删除旧备份：{removed}")
    sys.exit(exit_code)


_STEP_TEXT = {"digests": "文件摘要一致", "pg_verifybackup": "pg_verifybackup 通过",
              "test_restore": "试恢复后各表行数与抽样行一致"}


def _print_verification(result: dict[str, Any]) -> int:
    if result.get("status") == "ok":
        click.echo("校验通过：" + "，".join(_STEP_TEXT[s["step"]] for s in result.get("steps", [])
                                        if s["step"] in _STEP_TEXT))
        return 0
    click.echo("校验未通过：", err=True)
    for p in result.get("problems", []):
        click.echo(f"  - {p}", err=True)
    return 1


@backup_group.command("verify")
@click.argument("backup_id", required=False)
@pass_app
def verify_cmd(app: AppContext, backup_id: str | None) -> None:
    """校验备份 BACKUP_ID（默认最新一次）：文件摘要、物理备份的 pg_verifybackup、逻辑备份的试恢复与核对。"""
    from cdcsync.ops.backup.catalog import backup_dir, find_backup
    from cdcsync.ops.backup.verify import verify_backup

    backup = find_backup(backup_dir(app.settings), backup_id)
    result = verify_backup(app.settings, backup)
    click.echo(f"备份 {backup.id}：")
    sys.exit(_print_verification(result))


@backup_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="以 JSON 输出")
@pass_app
def list_cmd(app: AppContext, as_json: bool) -> None:
    """列出备份：编号、类型、完成时间、大小、备份与校验结果。"""
    from cdcsync.ops.backup.catalog import backup_dir, list_backups

    backups = list_backups(backup_dir(app.settings))
    if as_json:
        click.echo(orjson.dumps([b.summary() for b in backups], option=orjson.OPT_INDENT_2).decode())
        return
    if not backups:
        click.echo(f"{backup_dir(app.settings)} 下还没有备份。")
        return
    click.echo(f"{'编号':<20}{'类型':<10}{'完成时间（UTC）':<28}{'大小(MB)':>10}  备份  校验")
    for b in backups:
        v = (b.verification or {}).get("status", "未校验")
        click.echo(f"{b.id:<22}{b.manifest.kind:<12}{b.manifest.finished_at or '—':<32}"
                   f"{b.manifest.size / 1024 / 1024:>10.1f}  {b.manifest.status:<6}{v}")


_RESUMED = "平台已持有备份时刻前的全部数据，已新建复制槽，从当前位置继续同步（不重发）"
_SNAPSHOT = "将在 cdcsync run 启动时重做初始快照（平台按主键合并）"


@backup_group.command("restore")
@click.argument("backup_id")
@click.option("--target", help="恢复到的数据库连接串（如 host=127.0.0.1 dbname=emr user=postgres）")
@click.option("--files-to", type=click.Path(file_okay=False, path_type=Path),
              help="把配置、代码表、证书与密钥归档解到此目录（不会覆盖现用文件）")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="解密私钥所用的备份密钥（默认 backup.key_file）")
@click.option("--globals", "with_globals", is_flag=True, help="同时恢复数据库角色与成员关系（需建角色的权限）")
@click.option("--force", is_flag=True, help="允许覆盖已存在且有数据的数据库（还须再次输入数据库名确认）")
@click.option("--confirm", help="覆盖时的确认：目标数据库名（不给则交互询问）")
@click.option("--no-stream", is_flag=True, help="不处理复制槽与同步位点（只恢复数据，例如用于查询）")
@pass_app
def restore_cmd(app: AppContext, backup_id: str, target: str | None, files_to: Path | None, key_file: Path | None,
                with_globals: bool, force: bool, confirm: str | None, no_stream: bool) -> None:
    """恢复备份 BACKUP_ID：逻辑备份恢复到 --target 数据库，配置与密钥归档解到 --files-to 目录。"""
    from cdcsync.ops.backup.catalog import backup_dir, find_backup
    from cdcsync.ops.backup.pgtools import Account, bindir
    from cdcsync.ops.backup.restore import restore_database, target_tables

    settings = app.settings
    backup = find_backup(backup_dir(settings), backup_id)
    if not target and not files_to:
        raise click.UsageError("请指定 --target（恢复数据库）和/或 --files-to（恢复配置与密钥）")
    if target:
        account = Account(target, Account.of(settings.database).password if target == settings.database.dsn else None)
        if force and confirm is None and target_tables(account):
            confirm = click.prompt(f"将删除并替换数据库 {account.dbname} 中的全部数据。请再次输入数据库名确认",
                                   default="", show_default=False)
        done = restore_database(backup, account, bindir(settings), force=force, confirm=confirm,
                                with_globals=with_globals, stream=not no_stream)
        click.echo(f"已恢复到数据库 {done['database']}" + ("（原有数据已替换）" if done["replaced"] else ""))
        for slot in done["dropped_slots"]:
            click.echo(f"已删除原复制槽 {slot}")
        for dest, how in done["streams"].items():
            click.echo(f"目的地 {dest}：" + (_RESUMED if how == "resumed" else _SNAPSHOT))
    if files_to:
        from cdcsync.ops.backup.files import extract_files

        names = extract_files(backup.path, backup.id, files_to, key_file or settings.backup.key_file)
        click.echo(f"已将 {len(names)} 个文件解到 {files_to}（按原路径存放，请核对后再复制到位）")


@backup_group.command("prune")
@click.option("--dry-run", is_flag=True, help="只列出将删除的备份")
@pass_app
def prune_cmd(app: AppContext, dry_run: bool) -> None:
    """按保留策略（backup.keep_daily、backup.keep_weekly）删除旧备份。"""
    from cdcsync.ops.backup.catalog import backup_dir, list_backups
    from cdcsync.ops.backup.retention import prune

    cfg = app.settings.backup
    removed = prune(list_backups(backup_dir(app.settings)), cfg.keep_daily, cfg.keep_weekly, dry_run=dry_run)
    for r in removed:
        click.echo(("将删除：" if dry_run else "已删除：") + r)
    if not removed:
        click.echo("没有需要清理的备份。")


@backup_group.command("keygen")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def keygen_cmd(file: Path) -> None:
    """生成备份密钥 FILE（SM4，权限 0600），用于加密备份中的私钥与口令文件；请另行妥善保存一份。"""
    from cdcsync.ops.backup.files import write_backup_key

    write_backup_key(file)
    click.echo(f"已生成备份密钥：{file}（请在配置 backup.key_file 中指定，并离线保存副本）")


@backup_group.command("advance-wal")
@click.argument("backup_id")
@click.option("--datadir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="目标集群的数据目录（集群须已停止，且为恢复专门新建）")
@pass_app
def advance_wal_cmd(app: AppContext, backup_id: str, datadir: Path) -> None:
    """把新建目标集群的 WAL 位置推进到备份之后（pg_resetwal -l），使恢复后的新事件标识不与平台已收到的重复。"""
    from cdcsync.ops.backup.catalog import backup_dir, find_backup
    from cdcsync.ops.backup.pgtools import bindir
    from cdcsync.ops.backup.restore import advance_wal

    backup = find_backup(backup_dir(app.settings), backup_id)
    name = advance_wal(backup, bindir(app.settings), datadir)
    click.echo(f"已推进 WAL 位置（下一个 WAL 文件 {name}）；请启动目标集群后执行 cdcsync backup restore")


COMMANDS = [backup_group]
