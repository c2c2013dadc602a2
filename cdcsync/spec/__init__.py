"""Dataset spec (数据集规范): the single source of truth for the emr.* mirror tables."""

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
