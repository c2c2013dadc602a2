"""Where the shipped data lives: ``sql/`` (migrations) and ``mappings/`` (value domains).

In a source checkout they sit at the repository root; an installed wheel puts them under
``<prefix>/share/cdcsync/``. An environment variable overrides either.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def shared_dir(name: str, env: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "cdcsync" / name
