"""The vocabulary of a failed check: the ids of the checks every field gets and :class:`Violation`.

It sits with the spec (whose cross-field rules carry their own ids, VS001 …) because both the
validators (``cdcsync.validate``) and the code mapper (``cdcsync.mapping``) report in it, and the
compiler in ``validate/`` builds on the mapper, so neither package may own it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Stable ids of the checks every field gets; cross-field rules use the spec's own ids (VS001 …).
REQUIRED = "REQ001"  # required field empty
TYPE = "TYP001"  # value not of the field's type (or outside the type's range)
LENGTH = "LEN001"  # longer than the field's length, in characters
FORMAT = "FMT001"  # not in the field's format (phone, id_number, …)
UNMAPPED = "MAP001"  # local code with no mapping to the national value domain
NOT_IN_DOMAIN = "DOM001"  # the mapping points at a national code that is not in the domain

FIELD_RULE_IDS: tuple[str, ...] = (REQUIRED, TYPE, LENGTH, FORMAT, UNMAPPED, NOT_IN_DOMAIN)


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check. ``message`` is Chinese, for hospital staff, and never contains the value
    of a ``pii`` field (local codes are not patient data and are named in MAP001/DOM001)."""

    rule_id: str
    field: str | None
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {"rule_id": self.rule_id, "field": self.field, "message": self.message}
