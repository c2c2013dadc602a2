"""The platform side of the control plane: sign a configuration package and POST it to a
front end's 8882 listener, then verify the front end's signed reply (docs/control-plane.md)."""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from cdcsync.control.package import PACKAGES_PATH, Package, gzip_body, sign_package, verify_reply
from cdcsync.crypto.sm2 import SM2PrivateKey, SM2PublicKey


@dataclass(frozen=True)
class PushResult:
    http_status: int
    reply: dict[str, Any]
    verified: bool  # the reply's signature checked against the hospital's key


def payload_from_file(kind: str, path: Path) -> bytes:
    """The payload bytes of FILE: JSON as is; for ``rules`` a YAML pack wrapped as {file_name, content}."""
    data = path.read_bytes()
    if kind == "rules" and path.suffix in (".yaml", ".yml"):
        return orjson.dumps({"file_name": path.name, "content": data.decode("utf-8")})
    orjson.loads(data)  # a payload that is not JSON is refused here, not by the front end
    return data


def build_package(payload: bytes, *, platform_key: SM2PrivateKey, kind: str, version: int, org_code: str,
                  package_id: str | None = None) -> Package:
    return sign_package(payload, platform_key=platform_key, package_id=package_id or f"pkg-{uuid.uuid4().hex[:20]}",
                        kind=kind, version=version, org_code=org_code)


def send(url: str, body: bytes, *, ca_bundle: Path | None, hospital_pub: SM2PublicKey | None,
         compressed: bool = False, timeout: float = 60.0) -> PushResult:
    """POST ``body`` (an encoded package) to ``url`` (base URL of 8882)."""
    wire = gzip_body(body) if compressed else body
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
    headers = {"Content-Type": "application/json"}
    with httpx.Client(verify=verify, timeout=timeout) as client:
        r = client.post(url.rstrip("/") + PACKAGES_PATH, content=wire, headers=headers)
    if hospital_pub is None:
        return PushResult(r.status_code, orjson.loads(r.content), False)
    reply = verify_reply(r.content, r.headers, hospital_pub=hospital_pub, request_body=wire)
    return PushResult(r.status_code, reply, True)
