"""The validation stage never lets one row stop the stream, even when a checker itself fails."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest

from cdcsync.event import Change, Event, Rejection
from cdcsync.validate.reload import RulesHolder
from cdcsync.validate.stage import INTERNAL_RULE, ValidationStage


class _BrokenChecker:
    """Stands in for a compiled table whose generated code has a bug."""

    columns = frozenset({"org_code", "name"})
    ncols = 2

    def check(self, row: object, now: object) -> object:
        raise ValueError("invalid literal for int(): '张三丰'")  # the text quotes a patient value

    def map_only(self, row: object) -> object:
        return row


def _change(table: str, ordinal: int) -> Change:
    return Change("c", "emr", table, None, {"org_code": "X", "name": "张三丰"}, 0x16B374D848, 7,
                  dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC), ordinal)


def test_a_failing_checker_quarantines_the_row_without_patient_data(caplog: pytest.LogCaptureFixture) -> None:
    holder = RulesHolder.load()
    rules = holder.current()
    broken = dataclasses.replace(rules, tables={**rules.tables, "patient": _BrokenChecker()})  # type: ignore[dict-item]
    holder.swap(broken)  # as a hot reload swaps in a new rule set
    stage = ValidationStage(holder, "12110000400000000X", "emr")

    with caplog.at_level(logging.INFO):
        out = stage(_change("patient", 0))
    assert isinstance(out, Rejection)
    assert out.rule_id == INTERNAL_RULE and "ValueError" in out.message
    assert "张三丰" not in out.message and "张三丰" not in caplog.text

    # The next change of an unaffected table still flows.
    assert isinstance(stage(_change("cdc_probe", 1)), Event)
