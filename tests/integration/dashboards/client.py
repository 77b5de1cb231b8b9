"""OpenSearch Dashboards' HTTP API as the tests use it, and the compose stack's images.

``import_saved_objects`` sends what ``curl --form file=@podlog.ndjson`` sends
(the compose stack's ``dashboards-import``): a multipart form with one part
``file`` named ``*.ndjson``, and the ``osd-xsrf`` header the API requires on
every write.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
NDJSON = REPO / "deploy" / "dashboards" / "podlog.ndjson"
XSRF = {"osd-xsrf": "true"}


def compose_image(service: str) -> str:
    """The image a docker-compose.yml service runs, so the tests use the same version."""
    compose = yaml.safe_load(COMPOSE.read_text())
    return str(compose["services"][service]["image"])


def image_version(image: str) -> str:
    """The tag of ``name:tag``."""
    return image.rpartition(":")[2]


def saved_objects(path: Path = NDJSON) -> list[dict[str, Any]]:
    """The saved objects of an export file, one JSON object per line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def multipart_file(field: str, path: Path) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart form holding the file at ``path`` as ``field``."""
    boundary = f"podlog-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n'
        "Content-Type: application/ndjson\r\n"
        "\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", head + path.read_bytes() + tail


def request_json(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """(status, decoded JSON) of one request; an error status is returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text


def import_saved_objects(base_url: str, path: Path = NDJSON) -> tuple[int, Any]:
    """POST the file to ``/api/saved_objects/_import?overwrite=true``; (status, reply)."""
    content_type, body = multipart_file("file", path)
    return request_json(
        f"{base_url}/api/saved_objects/_import?overwrite=true",
        method="POST",
        body=body,
        headers={**XSRF, "Content-Type": content_type},
    )


def is_green(base_url: str) -> bool:
    """Whether ``/api/status`` says the server is up and its saved objects migrated.

    Until then it answers 503 "server is not ready yet" (and the poll goes on).
    """
    status, reply = request_json(f"{base_url}/api/status", timeout=5.0)
    if status != 200 or not isinstance(reply, dict):
        return False
    overall = (reply.get("status") or {}).get("overall") or {}
    # 2.x answers the legacy shape ("state": "green"); the newer one says "level": "available".
    return overall.get("state") == "green" or overall.get("level") == "available"
