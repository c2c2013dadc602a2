"""Connection settings of a database account (``database`` of the config, and ``api.database``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn: str = "host=127.0.0.1 port=5432 dbname=emr user=cdcsync"
    # Password kept out of the config file and the environment listing.
    password_file: Path | None = None

    def conninfo(self) -> str:
        if self.password_file is None:
            return self.dsn
        from cdcsync.secrets import read_secret

        password = read_secret(self.password_file).replace("\\", "\\\\").replace("'", "\\'")
        return f"{self.dsn} password='{password}'"
