"""Building blocks shared by the settings models (the config file's sections): a strict frozen
base model and the constrained field types several sections repeat."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A config section: unknown keys are an error (a typo must not be ignored), values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
