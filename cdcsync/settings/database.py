"""Connection settings of a database account (``database`` of the config, and ``api.database``)."""

from __future__ import annotations

import functools
from pathlib import Path

from cdcsync.settings import SettingsModel


class DatabaseSettings(SettingsModel):
    dsn: str = "host=127.0.0.1 port=5432 dbname=emr user=cdcsync"
    # Password kept out of the config file and the environment listing.
    password_file: Path | None = None

    def conninfo(self) -> str:
        if self.password_file is None:
            return self.dsn
        from cdcsync.secrets import read_secret

        password = read_secret(self.password_file).replace("\\", "\\\\").replace("'", "\\'")
        return f"{self.dsn} password='{password}'"

    @functools.cached_property
    def dbname(self) -> str:
        """The database the DSN connects to, resolved once by libpq's own rules: ``dbname`` of
        the DSN, else ``$PGDATABASE``, else the user name (the DSN's, ``$PGUSER``, the OS user).
        The one origin of the database part of event ids (``{org_code}.{dbname}``) on every path
        (stream, snapshot, quarantine retry); a session checks it against the connection."""
        return database_name(self.dsn)


def database_name(dsn: str) -> str:
    """libpq's choice of database for ``dsn`` (see :attr:`DatabaseSettings.dbname`)."""
    import psycopg
    from psycopg import pq

    from cdcsync.config_error import ConfigError

    try:
        given = {o.keyword: o.val for o in pq.Conninfo.parse(dsn.encode()) if o.val}
    except psycopg.Error as exc:
        raise ConfigError(f"database.dsn: 无法解析连接串：{str(exc).strip().splitlines()[0]}") from None
    defaults = {o.keyword: o.val for o in pq.Conninfo.get_defaults() if o.val}
    name = given.get(b"dbname") or defaults.get(b"dbname") or given.get(b"user") or defaults.get(b"user")
    if not name:
        raise ConfigError("database.dsn: 无法确定数据库名，请在连接串中写明 dbname=…")
    return name.decode()
