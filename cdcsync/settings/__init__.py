"""The config file's section models, below the loader (``cdcsync.config``) that assembles them.

  api      section ``api``: the listeners 8881/8883/8884, TLS, plain-HTTP findings
  ops      section ``ops``: heartbeats, fault thresholds, alert channels, evaluation thresholds
  backup   section ``backup``
  database ``database`` and ``api.database``: a database account (DSN, password file)
  control  section ``control``: the 8882 configuration packages (``control/``)
  surveil  section ``surveil``: the rules consumer (``surveil/``)
  workbench section ``workbench``: the 8884 workbench and its HIS callback (``workbench/``)

They live here, not beside the packages that read them (``api/``, ``ops/``, ``control/``,
``surveil/``, ``workbench/``), because those packages read the whole config too: a section inside them would make
``config`` and the package import each other. ``sink/http_settings.py`` stays beside the sink,
which sits below the config and never imports it. This module holds what all sections share.
Beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: every stage is configured
from here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class SettingsModel(BaseModel):
    """A config section: unknown keys are errors (a typo must not silently fall back to a
    default), and settings never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# A destination's name: it names its replication slot (cdcsync_<name>) and its rows in the
# state tables, so it must be a short lower-case identifier.
DestinationName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,30}$")]


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"邮件地址格式不正确：{value!r}（应为 名称@域名）")
    return value


# A mail address (sender or recipient): one "@", no blanks.
Email = Annotated[str, AfterValidator(_email)]
# A network timeout for one request to a channel or platform, in seconds.
NetTimeout = Annotated[float, Field(gt=0, le=120)]
# A weight in a score formula (docs/evaluation.md).
Weight = Annotated[float, Field(ge=0)]
