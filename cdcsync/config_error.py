"""The configuration error type, in a module of its own so that settings models anywhere
(``db/``, ``api/``, ``sink/``) can raise it without importing the config loader."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, phrased for the hospital admin in one line."""
