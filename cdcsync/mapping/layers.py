"""Where each layer of the mapping set lives (docs/control-plane.md, "Layers").

* shipped  ``<mappings_dir>/national``: the national value domains of the installed release
           (``mappings_dir`` unset: the release's own ``mappings/``);
* pushed   ``<state_dir>/mappings/current/national``: domains the national platform pushed on
           8882 or an admin imported; ``current`` is a symlink to one generation directory,
           switched atomically (cdcsync.control.apply), so a reader sees one whole layer;
* local    ``<local_mappings_dir or mappings_dir>/local/<hospital>``: the hospital's own
           local→national tables, which neither a push nor an upgrade ever writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cdcsync.mapping.domains import CodeTables, default_mappings_dir, load_code_tables

if TYPE_CHECKING:
    from cdcsync.config import Settings

PUSHED_ROOT = "mappings"
CURRENT_LINK = "current"


def pushed_root(state_dir: Path) -> Path:
    """``<state_dir>/mappings``: generations of the pushed layer and the ``current`` link."""
    return Path(state_dir) / PUSHED_ROOT


def pushed_dir(state_dir: Path) -> Path:
    """The pushed layer in force (may not exist yet: the layer is then empty)."""
    return pushed_root(state_dir) / CURRENT_LINK


@dataclass(frozen=True)
class MappingLayers:
    mappings_dir: Path
    pushed_dir: Path | None
    local_dir: Path
    hospital: str

    @classmethod
    def from_settings(cls, settings: Settings) -> MappingLayers:
        root = Path(settings.mappings_dir) if settings.mappings_dir is not None else default_mappings_dir()
        local = Path(settings.local_mappings_dir) if settings.local_mappings_dir is not None else root
        return cls(root, pushed_dir(settings.state_dir), local, settings.hospital)

    @classmethod
    def resolve(cls, settings: Settings | None, mappings_dir: Path | None = None,
                hospital: str | None = None) -> MappingLayers:
        """The layers of ``settings`` (when there is a config file), with a command line's
        ``--mappings-dir`` / ``--hospital`` taking precedence; without settings only the shipped
        (or given) directory, as before layers existed."""
        if settings is None:
            root = Path(mappings_dir) if mappings_dir is not None else default_mappings_dir()
            return cls(root, None, root, hospital or "example")
        base = cls.from_settings(settings)
        if mappings_dir is not None:
            root = Path(mappings_dir)
            local = Path(settings.local_mappings_dir) if settings.local_mappings_dir is not None else root
            base = cls(root, base.pushed_dir, local, base.hospital)
        return cls(base.mappings_dir, base.pushed_dir, base.local_dir, hospital or base.hospital)

    def load(self, *, strict: bool = False) -> CodeTables:
        return load_code_tables(self.mappings_dir, self.hospital, strict=strict, pushed_dir=self.pushed_dir,
                                local_dir=self.local_dir)
