"""Rules that exist once (#13 "Copies"): each has one home, and a new copy elsewhere fails here.

A source scan, not a behaviour test: the homes' behaviour is tested where it is used (config,
API keys, backups, key files, listeners)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# rule -> (pattern of a copy, its home); surveil/cases.py's SNOOZE_MAX (8 hours) is no time zone
RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "Beijing time zone": (re.compile(r"timedelta\(hours=8\)"), "cdcsync/beijing.py"),
    "Beijing date in SQL": (re.compile(r"AT TIME ZONE 'Asia/Shanghai'"), "cdcsync/beijing.py"),
    "settings model base": (re.compile(r'ConfigDict\(extra="forbid", frozen=True\)'), "cdcsync/settings/__init__.py"),
    "destination name": (re.compile(re.escape("[a-z][a-z0-9_]{0,30}")), "cdcsync/settings/__init__.py"),
    "file permission rule": (re.compile(r"S_IRWX[GO]|&\s*0o0[0-7]{2}\b"), "cdcsync/secrets.py"),
    "loopback rule": (re.compile(r"\.is_loopback\b"), "cdcsync/net.py"),
    "YAML reading": (re.compile(r"yaml\.(safe_)?load\(|problem_mark"), "cdcsync/yamlfile.py"),
}

# Files allowed to keep a copy, with the reason; an entry goes when its copy does, and
# test_known_copies_still_exist keeps the list true.
KNOWN_COPIES: dict[tuple[str, str], str] = {
}


def _copies() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in sorted((REPO / "cdcsync").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8")
        for rule, (pattern, home) in RULES.items():
            if rel != home and any(pattern.search(line) and "SNOOZE" not in line for line in text.splitlines()):
                found.add((rule, rel))
    return found


def test_each_rule_has_one_copy() -> None:
    extra = sorted(_copies() - KNOWN_COPIES.keys())
    assert not extra, "a rule copied instead of imported (use its home in RULES): " + repr(extra)


def test_known_copies_still_exist() -> None:
    stale = sorted(KNOWN_COPIES.keys() - _copies())
    assert not stale, f"remove from KNOWN_COPIES: {stale}"
