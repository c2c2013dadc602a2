"""The reference platform's release channel: ``publish-release`` signs a manifest for a wheel
and its dependency bundle; the app serves the newest manifest and the wheel files
(docs/control-plane.md, "Upgrades")."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import orjson
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

from cdcsync.control.bundle import file_digest
from cdcsync.control.release import FILES_PATH, MANIFEST_PATH, Dependency, Manifest, sign_manifest
from cdcsync.crypto.sm2 import SM2PrivateKey

MANIFEST_FILE = "manifest.json"


def publish_release(releases_dir: Path, wheel: Path, *, notes: str, platform_key: SM2PrivateKey,
                    version: str | None = None, min_supported_version: str = "0.0.0",
                    irreversible_migrations: bool = False, dependencies: Sequence[Path] = ()) -> Manifest:
    """Copy ``wheel`` and the ``dependencies`` wheels into ``releases_dir`` and make it the latest
    release (signed manifest, format 2 when there are dependencies: each file's size and SM3).
    ``version``: default from the wheel's file name (name-version-...whl)."""
    data = wheel.read_bytes()
    version = version or wheel.name.split("-")[1]
    deps = tuple(Dependency(p.name, *file_digest(p)) for p in dependencies)
    m = sign_manifest(data, wheel=wheel.name, version=version, notes=notes, platform_key=platform_key,
                      min_supported_version=min_supported_version, irreversible_migrations=irreversible_migrations,
                      dependencies=deps)
    releases_dir.mkdir(parents=True, exist_ok=True)
    for path in (wheel, *dependencies):
        shutil.copy2(path, releases_dir / path.name)
    tmp = releases_dir / f".{MANIFEST_FILE}.tmp"
    tmp.write_bytes(orjson.dumps(m.as_dict()))
    tmp.replace(releases_dir / MANIFEST_FILE)
    return m


def add_release_routes(app: FastAPI, releases_dir: Path | None) -> None:
    @app.get(MANIFEST_PATH)
    async def latest() -> Response:
        path = releases_dir / MANIFEST_FILE if releases_dir is not None else None
        if path is None or not path.is_file():
            return JSONResponse({"error": "no_release", "message": "尚未发布版本"}, status_code=404)
        return Response(path.read_bytes(), media_type="application/json")

    @app.get(FILES_PATH + "/{name}")
    async def wheel(name: str) -> Response:
        if releases_dir is None or "/" in name or name.startswith(".") or not name.endswith(".whl"):
            return JSONResponse({"error": "not_found"}, status_code=404)
        path = releases_dir / name
        if not path.is_file():
            return JSONResponse({"error": "not_found"}, status_code=404)
        return FileResponse(path, media_type="application/octet-stream")
