"""A directory of immutable generations with a ``current`` symlink switched atomically.

Each applied package of a kind gets its own generation directory (never rewritten); applying
or rolling back is one ``rename(2)`` of a symlink, so a reader sees the old or the new
generation whole. ``current`` absent means "the release's own" (nothing pushed).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

GENERATIONS = "generations"
CURRENT = "current"


class Generations:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def link(self) -> Path:
        return self.root / CURRENT

    def path(self, name: str) -> Path:
        return self.root / GENERATIONS / name

    def current(self) -> str | None:
        """Name of the generation in force, or None."""
        try:
            target = os.readlink(self.link)
        except (FileNotFoundError, OSError):
            return None
        return Path(target).name

    def create(self, label: str) -> tuple[str, Path]:
        """A new, empty generation directory named after ``label`` (unique)."""
        base = re.sub(r"[^A-Za-z0-9._-]", "_", label)[:100] or "gen"
        (self.root / GENERATIONS).mkdir(parents=True, exist_ok=True)
        n = 0
        while True:
            name = base if n == 0 else f"{base}.{n}"
            path = self.path(name)
            try:
                path.mkdir()
                return name, path
            except FileExistsError:
                n += 1

    def switch(self, name: str | None) -> None:
        """Point ``current`` at generation ``name`` (None: remove it) atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        if name is None:
            self.link.unlink(missing_ok=True)
        else:
            if not self.path(name).is_dir():
                raise FileNotFoundError(f"{self.path(name)}: generation missing")
            tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(Path(GENERATIONS) / name, tmp)
            os.replace(tmp, self.link)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
