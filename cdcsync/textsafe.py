"""Text from outside (request paths, the platforms' reason texts) made safe to log, store and show.

A line feed in a logged path would forge a log line; a platform's reason could carry terminal
escapes, bidi overrides or megabytes of text into the quarantine, ``status`` and the web pages.
"""

from __future__ import annotations

import re
import unicodedata

# C0/C1 controls, DEL, line/paragraph separators and format characters (bidi overrides, zero width).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
PLATFORM_TEXT_MAX = 500


def _unsafe(ch: str) -> bool:
    return bool(_UNSAFE.match(ch)) or unicodedata.category(ch) in ("Cf", "Cs", "Co")


def escape_controls(text: str) -> str:
    """Every unsafe character as ``\\xNN``/``\\uNNNN`` (reversible for a reader, one log line)."""
    if text.isprintable():
        return text
    return "".join((f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") if _unsafe(c) else c
                   for c in text)


def platform_text(text: object, limit: int = PLATFORM_TEXT_MAX) -> str:
    """A platform-supplied reason or error text: unsafe characters become spaces, runs of white
    space one space, at most ``limit`` characters (then "…")."""
    s = text if isinstance(text, str) else str(text)
    s = " ".join("".join(" " if _unsafe(c) else c for c in s[: limit * 4]).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
