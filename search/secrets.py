"""The secrets file: identities, their credentials and namespaces, and how it is reloaded.

The file (a Kubernetes Secret mounted as a file) is YAML::

    identities:
      - name: team-a
        token_sha256: 9f86d0...        # sha256 of a random token; or token: <plain>
        namespaces: ["team-a", "team-a-*"]
      - name: alice
        password_hash: $argon2id$v=19$m=65536,t=3,p=4$...   # podlog search hash-password
        namespaces: ["*"]

Reload policy (checked every ``search.auth.reload_seconds``):

* changed and valid: the new identities replace the old at once;
  ``podlog_search_secrets_loaded_timestamp_seconds`` is set to now.
* changed and broken (bad YAML, a bad entry) or unreadable: the last good
  identities stay, an error naming the file and the problem is logged once per
  broken version, and ``podlog_search_secrets_reload_errors_total{reason}`` counts it.
  Readiness stays green: refusing every request would turn a typo into an outage.
* deleted: everything the file granted is revoked (no identity is left), the
  error is logged and counted with reason ``missing``.  A mounted Secret is
  swapped atomically, so a missing file is a deletion, never a half-done update.

At start any of these is fatal: the process does not serve without a good file.
"""

from __future__ import annotations

import errno
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from podlog.errors import ConfigError
from search import events
from search.namespaces import validate_pattern
from search.passwords import MIGRATE_HINT, check_password_hash

__all__ = ["Entry", "SecretsFile", "load_identities"]

_KEYS = ("name", "token", "token_sha256", "password_hash", "namespaces")
_REFUSED = {
    "password": "a plain password is not accepted in the secrets file",
    "password_sha256": "password_sha256 is an unsalted hash and is no longer accepted",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One identity of the secrets file."""

    name: str
    namespaces: tuple[str, ...]
    token_sha256: bytes | None
    password_hash: str | None
    """An argon2id PHC string."""

    @property
    def grant(self) -> bytes:
        """A digest of everything this entry grants: changes when its credential or namespaces do."""
        parts = [self.name, *self.namespaces, (self.token_sha256 or b"").hex(), self.password_hash or ""]
        return hashlib.sha256("\0".join(parts).encode()).digest()


def _token_digest(raw: Mapping[str, Any], where: str) -> bytes | None:
    plain = raw.get("token")
    hashed = raw.get("token_sha256")
    if plain is not None and hashed is not None:
        raise ConfigError(f"{where}: give token or token_sha256, not both")
    if plain is not None:
        if not isinstance(plain, str) or len(plain) < 8:
            raise ConfigError(f"{where}.token: must be a string of at least 8 characters")
        return hashlib.sha256(plain.encode()).digest()
    if hashed is not None:
        try:
            digest = bytes.fromhex(str(hashed))
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ConfigError(f"{where}.token_sha256: must be 64 hex digits")
        return digest
    return None


def load_identities(path: str | Path) -> list[Entry]:
    """Read and validate the secrets file; ConfigError names the file, the entry and the problem."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read auth secrets file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("identities"), list):
        raise ConfigError(f"{path}: expected a mapping with an 'identities' list")
    entries: list[Entry] = []
    names: set[str] = set()
    for index, raw in enumerate(data["identities"]):
        where = f"{path}: identities[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        for key, why in _REFUSED.items():
            if key in raw:
                raise ConfigError(f"{where}.{key}: {why}; {MIGRATE_HINT}")
        unknown = set(raw) - set(_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(map(str, unknown))[0]!r}; valid: {', '.join(_KEYS)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: required")
        if name in names:
            raise ConfigError(f"{where}.name: {name!r} appears twice")
        names.add(name)
        namespaces = raw.get("namespaces")
        if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
            raise ConfigError(f"{where}.namespaces: required, a list of namespace patterns")
        password_hash = raw.get("password_hash")
        entries.append(
            Entry(
                name=name,
                namespaces=tuple(validate_pattern(n) for n in namespaces),
                token_sha256=_token_digest(raw, where),
                password_hash=None
                if password_hash is None
                else check_password_hash(password_hash, f"{where}.password_hash"),
            )
        )
    return entries


def _version(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class SecretsFile:
    """The identities of one secrets file, reloaded when it changes (see the module doc)."""

    def __init__(self, path: Path, reload_seconds: float) -> None:
        self.path = path
        self._reload_seconds = reload_seconds
        self._checked = time.monotonic()
        self.entries: list[Entry] = load_identities(path)
        self.generation = 0
        """Incremented each time the identities change (a reload, a revocation by deletion)."""
        self._version: tuple[int, int, int] | None = _version(path)
        self._failed: tuple[object, ...] | None = None
        events.secrets_loaded(str(path), len(self.entries))

    def refresh(self, *, now: float | None = None) -> None:
        """Reload if ``reload_seconds`` passed since the last check and the file changed."""
        now = time.monotonic() if now is None else now
        if now - self._checked < self._reload_seconds:
            return
        self._checked = now
        try:
            version = _version(self.path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                self._missing()
            else:
                self._fail(("unreadable", exc.errno), "unreadable", f"cannot stat: {exc.strerror}")
            return
        if version == self._version:
            return
        try:
            entries = load_identities(self.path)
        except ConfigError as exc:
            reason = "unreadable" if isinstance(exc.__cause__, OSError) else "invalid"
            self._fail(("broken", version), reason, str(exc))
            return
        self._version = version
        self._failed = None
        self.entries = entries
        self.generation += 1
        events.secrets_loaded(str(self.path), len(entries))

    def _missing(self) -> None:
        if self._version is None:
            return  # already revoked and reported
        self._version = None
        self.entries = []
        self.generation += 1
        self._failed = None
        events.secrets_reload_failed(
            str(self.path), "missing", "the file is gone; every identity it granted is revoked"
        )

    def _fail(self, key: tuple[object, ...], reason: str, error: str) -> None:
        if key == self._failed:
            return  # this broken version was reported already
        self._failed = key
        events.secrets_reload_failed(str(self.path), reason, f"{error}; the last good identities stay in use")
