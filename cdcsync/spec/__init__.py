"""Dataset spec (数据集规范): the single source of truth for the emr.* mirror tables.

Below the whole flow ``source/ → validate/ + mapping/ → engine/ → sink/``: the mirror DDL
(``ddl``), the validators, the value domains the mapper targets and the API's models are all
generated from it. ``violations`` holds the rule ids validators and mapper report in.
"""

from cdcsync.spec.model import (
    DOMAINS,
    FIELD_TYPES,
    FORMATS,
    RULE_KINDS,
    TIMELINESS,
    Field,
    Rule,
    Spec,
    SpecError,
    Table,
    load_spec,
)

__all__ = [
    "DOMAINS",
    "FIELD_TYPES",
    "FORMATS",
    "RULE_KINDS",
    "TIMELINESS",
    "Field",
    "Rule",
    "Spec",
    "SpecError",
    "Table",
    "load_spec",
]
