"""Moved to :mod:`cdcsync.settings.api` (the config loader imports the section models, so they
sit below it in ``cdcsync/settings/``, outside the packages that read the config).

This re-export keeps ``engine/status.py`` working until it imports the new path; delete it then.
"""

from __future__ import annotations

from cdcsync.settings.api import plain_http_warnings

__all__ = ["plain_http_warnings"]
