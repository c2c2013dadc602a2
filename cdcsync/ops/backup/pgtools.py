"""The PostgreSQL client programs a backup runs, and how: the password goes through the
environment (``PGPASSWORD``), never on a command line that ``ps`` shows."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdcsync.ops.backup.catalog import BackupError

if TYPE_CHECKING:
    from cdcsync.config import Settings
    from cdcsync.settings.database import DatabaseSettings

# Session settings under which row texts are hashed: the same on the source and on a test restore.
HASH_SESSION = ("SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO, YMD'",
                "SET LOCAL IntervalStyle = 'postgres'", "SET LOCAL extra_float_digits = 3",
                "SET LOCAL bytea_output = 'hex'")


def bindir(settings: Settings) -> Path:
    if settings.backup.pg_bindir is not None:
        return settings.backup.pg_bindir
    from cdcsync.db.cluster import ClusterError, find_bindir

    try:
        return find_bindir()
    except ClusterError as exc:
        raise BackupError(f"找不到 PostgreSQL 客户端程序（pg_dump 等）：{exc}；"
                          "可在 backup.pg_bindir 中指定目录") from None


@dataclass(frozen=True)
class Account:
    """A DSN without its password, and the password for the child's environment."""

    dsn: str
    password: str | None = None

    @classmethod
    def of(cls, db: DatabaseSettings, dsn: str | None = None) -> Account:
        password = None
        if db.password_file is not None:
            from cdcsync.secrets import read_secret

            password = read_secret(db.password_file)
        return cls(dsn or db.dsn, password)

    def conninfo(self, **override: Any) -> str:
        """For psycopg in this process (password included)."""
        extra = {"password": self.password} if self.password else {}
        return make_conninfo(self.dsn, **extra, **override)

    def for_tool(self, **override: Any) -> str:
        return make_conninfo(self.dsn, **override)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    @property
    def dbname(self) -> str:
        from cdcsync.settings.database import database_name

        return database_name(self.dsn)

    def with_db(self, dbname: str) -> Account:
        return Account(make_conninfo(self.dsn, dbname=dbname), self.password)

    @property
    def params(self) -> dict[str, Any]:
        return conninfo_to_dict(self.dsn)


def run_tool(bin_dir: Path, tool: str, *args: str, env: dict[str, str] | None = None,
             user: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program; a failure raises BackupError with the last lines of its stderr."""
    path = bin_dir / tool
    if not path.exists():
        raise BackupError(f"找不到 {path}（安装 postgresql-client，或在 backup.pg_bindir 中指定目录）")
    done = subprocess.run([str(path), *args], capture_output=True, text=True, env=env, user=user, cwd="/",
                          timeout=timeout, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise BackupError(f"{tool} 失败（退出码 {done.returncode}）：{tail}")
    return done
