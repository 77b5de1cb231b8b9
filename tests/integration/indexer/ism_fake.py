"""Index State Management, faked in front of a real OpenSearch stand-in.

Neither local emulator has the ISM plugin, and no Docker daemon answers here
for a real OpenSearch, so the ISM API is answered by this proxy from what the
OpenSearch documentation says it does, and everything else is forwarded to
the emulator (indices, documents, ``_cat``, delete-by-query are real):

* ``GET|PUT /_plugins/_ism/policies/<id>``: policies with ``_seq_no`` and
  ``_primary_term``; a PUT over an existing policy needs the current
  ``if_seq_no``/``if_primary_term`` (else 409), and bumps the sequence number;
* an index gets the policy whose ``ism_template`` matches it when the index is
  created (:meth:`FakeIsm.observe` plays the creation; explain observes too),
  and *keeps the policy version it started with* until change-policy;
* ``GET /_plugins/_ism/explain/<pattern>``, ``POST /_plugins/_ism/add/<index>``,
  ``POST /_plugins/_ism/change_policy/<index>``;
* :meth:`FakeIsm.run_ism` deletes a managed index once its age since creation
  reaches the ``min_index_age`` of the policy version it is on.

Every ISM request that changes something is recorded in :attr:`FakeIsm.changes`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeIsm"]

_AGE = re.compile(r"^(\d+)([dhm])$")


class FakeIsm:
    """A threaded HTTP proxy: ISM answered here, the rest forwarded to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.policies: dict[str, dict[str, Any]] = {}
        self.versions: dict[tuple[str, int], dict[str, Any]] = {}
        """Every version of every policy: (id, seq_no) -> body."""
        self.managed: dict[str, tuple[str, int]] = {}
        """Index -> (policy id, the policy's seq_no it runs)."""
        self.created: dict[str, datetime] = {}
        self.changes: list[tuple[str, str]] = []
        """(request kind, target) of every ISM change, in order."""
        self.clock: datetime = datetime.now(tz=UTC)
        """The fake's "now": when observed indices count as created."""
        self._seq = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-ism", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeIsm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the cluster side ----------------------------------------------------------

    def _indices(self, pattern: str) -> list[str]:
        try:
            rows = _http("GET", f"{self.upstream}/_cat/indices/{pattern}?format=json&h=index")[1]
        except urllib.error.HTTPError:
            return []
        return sorted(row["index"] for row in json.loads(rows or b"[]"))

    def observe(self, pattern: str = "*") -> None:
        """Indices not seen before are created now: the matching policy (current version) takes them."""
        with self._lock:
            for index in self._indices(pattern):
                if index in self.created:
                    continue
                self.created[index] = self.clock
                for pid, stored in self.policies.items():
                    templates = stored["policy"].get("ism_template") or []
                    if any(fnmatch.fnmatchcase(index, p) for t in templates for p in t["index_patterns"]):
                        self.managed[index] = (pid, stored["_seq_no"])
                        break

    def age_limit(self, index: str) -> timedelta | None:
        """The ``min_index_age`` of the policy version ``index`` runs, if managed."""
        found = self.managed.get(index)
        if found is None:
            return None
        body = self.versions[found]
        hot = body["policy"]["states"][0]
        match = _AGE.match(hot["transitions"][0]["conditions"]["min_index_age"])
        assert match is not None
        value, unit = int(match.group(1)), match.group(2)
        return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: value})

    def run_ism(self, now: datetime) -> list[str]:
        """Delete each managed index whose age reached its policy version's ``min_index_age``."""
        gone = []
        for index in sorted(self.managed):
            limit = self.age_limit(index)
            if limit is not None and now - self.created[index] >= limit:
                _http("DELETE", f"{self.upstream}/{index}")
                gone.append(index)
        for index in gone:
            del self.managed[index]
        return gone

    # -- the ISM API -----------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")[2:]  # after _plugins/_ism
        with self._lock:
            if parts[:1] == ["policies"]:
                return self._policies(method, parts[1] if len(parts) > 1 else None, query, body)
        if parts[:1] == ["explain"]:
            self.observe(parts[1] if len(parts) > 1 else "*")
            return 200, self._explain(parts[1] if len(parts) > 1 else "*")
        if parts[:1] in (["add"], ["change_policy"]) and method == "POST" and len(parts) > 1:
            return 200, self._attach(parts[0], parts[1], body or {})
        return 400, {"error": f"no handler for {method} {path}"}

    def _policies(self, method: str, pid: str | None, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if pid is None:
            listed = [{"_id": k, **v} for k, v in self.policies.items()]
            return 200, {"policies": listed, "total_policies": len(listed)}
        stored = self.policies.get(pid)
        if method == "GET":
            if stored is None:
                return 404, {"error": {"type": "status_exception", "reason": "Policy not found"}, "status": 404}
            return 200, {"_id": pid, **stored}
        if method != "PUT":
            return 400, {"error": "unsupported"}
        if stored is not None and (
            query.get("if_seq_no") != str(stored["_seq_no"]) or query.get("if_primary_term") != "1"
        ):
            return 409, {"error": {"type": "version_conflict_engine_exception"}, "status": 409}
        self._seq += 1
        self.policies[pid] = {"_seq_no": self._seq, "_primary_term": 1, "policy": body["policy"]}
        self.versions[(pid, self._seq)] = {"policy": body["policy"]}
        self.changes.append(("update_policy" if stored else "create_policy", pid))
        return (200 if stored else 201), {"_id": pid, "_seq_no": self._seq, "_primary_term": 1}

    def _explain(self, pattern: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index in self._indices(pattern):
            found = self.managed.get(index)
            if found is None:
                out[index] = {"index.plugins.index_state_management.policy_id": None, "enabled": None}
            else:
                pid, seq = found
                out[index] = {
                    "index.plugins.index_state_management.policy_id": pid,
                    "index": index,
                    "policy_id": pid,
                    "policy_seq_no": seq,
                    "policy_primary_term": 1,
                    "enabled": True,
                }
        out["total_managed_indices"] = sum(1 for i in out if i in self.managed)
        return out

    def _attach(self, kind: str, index: str, body: dict[str, Any]) -> dict[str, Any]:
        pid = body.get("policy_id")
        with self._lock:
            stored = self.policies.get(str(pid))
            if stored is None or (kind == "change_policy" and index not in self.managed):
                return {"updated_indices": 0, "failures": True, "failed_indices": [{"index_name": index}]}
            self.managed[index] = (str(pid), stored["_seq_no"])
            self.changes.append(("add_policy" if kind == "add" else "change_policy", index))
        return {"updated_indices": 1, "failures": False, "failed_indices": []}

    def forward(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        status, data, ctype = _http(method, self.upstream + target, body or None, headers.get("Content-Type"))
        if target.startswith("/_cat/indices") and "creation.date" in target and status == 200:
            rows = json.loads(data or b"[]")
            for row in rows:
                born = self.created.get(row.get("index", ""))
                if born is not None:
                    row["creation.date"] = str(int(born.timestamp() * 1000))
            data = json.dumps(rows).encode()
        return status, data, ctype


def _http(method: str, url: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", ctype or "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "application/json")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "application/json")


def _handler(fake: FakeIsm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            if split.path.startswith("/_plugins/_ism"):
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                status, answer = fake.handle(self.command, split.path, query, json.loads(raw) if raw else None)
                data, ctype = json.dumps(answer).encode(), "application/json"
            else:
                status, data, ctype = fake.forward(self.command, self.path, raw, dict(self.headers))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    return Handler
