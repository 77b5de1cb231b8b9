"""Authentication and namespace authorization for the search API.

One mode per server (``search.auth.mode``):

``token``   ``Authorization: Bearer <token>``, tokens listed in the secrets file
``basic``   ``Authorization: Basic``, user names and passwords from the secrets file
``header``  a trusted auth proxy names the user in ``auth.trusted_header``; only
            requests from ``auth.trusted_proxies`` are believed
``none``    no authentication; everyone sees ``auth.anonymous_namespaces``.
            Only when configured explicitly: the default is ``token``.

The secrets file (a Kubernetes Secret mounted as a file) is YAML::

    identities:
      - name: team-a
        token_sha256: 9f86d0...        # or token: <plain>
        namespaces: ["team-a", "team-a-*"]
      - name: alice
        password: s3cret               # or password_sha256
        namespaces: ["*"]

Every identity maps to namespace patterns (``*`` and ``?`` wildcards); the API
passes them to the backend on every query, histogram, context, tail and
export, so the restriction is enforced on the server.  The file is re-read
when it changes, so rotating a Secret needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from podlog.errors import ConfigError, PodlogError
from search.config import AuthConfig

__all__ = [
    "AuthError",
    "Authenticator",
    "Identity",
    "load_identities",
    "namespace_allowed",
    "validate_pattern",
]

_PATTERN = re.compile(r"^[a-z0-9*?.-]+$")
_RELOAD_CHECK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller and the namespaces it may read."""

    name: str
    namespaces: tuple[str, ...]
    """fnmatch-style patterns (``*``, ``?``); ``("*",)`` means every namespace."""


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    namespaces: tuple[str, ...]
    token_sha256: bytes | None
    password_sha256: bytes | None


class AuthError(PodlogError):
    """The request is not authenticated (401) or its identity is unknown (403)."""

    def __init__(self, message: str, *, status: int = 401, reason: str = "missing") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        """Bounded label for the failure metric: missing, invalid, untrusted, unknown."""


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a namespace pattern (DNS label chars, ``*``, ``?``)."""
    if not _PATTERN.match(pattern):
        raise ConfigError(f"namespace pattern {pattern!r} may contain only a-z, 0-9, '-', '.', '*' and '?'")
    return pattern


def namespace_allowed(namespace: str, patterns: Sequence[str]) -> bool:
    """True when ``namespace`` matches one of ``patterns``."""
    return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns)


def _sha256_field(raw: Mapping[str, Any], key: str, where: str) -> bytes | None:
    plain = raw.get(key)
    hashed = raw.get(f"{key}_sha256")
    if plain is not None and hashed is not None:
        raise ConfigError(f"{where}: give {key} or {key}_sha256, not both")
    if plain is not None:
        if not isinstance(plain, str) or len(plain) < 8:
            raise ConfigError(f"{where}.{key}: must be a string of at least 8 characters")
        return hashlib.sha256(plain.encode()).digest()
    if hashed is not None:
        try:
            digest = bytes.fromhex(str(hashed))
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ConfigError(f"{where}.{key}_sha256: must be 64 hex digits")
        return digest
    return None


def load_identities(path: str | Path) -> list[_Entry]:
    """Read and validate the secrets file; ConfigError names the bad entry."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read auth secrets file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("identities"), list):
        raise ConfigError(f"{path}: expected a mapping with an 'identities' list")
    entries: list[_Entry] = []
    names: set[str] = set()
    for index, raw in enumerate(data["identities"]):
        where = f"{path}: identities[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = set(raw) - {"name", "token", "token_sha256", "password", "password_sha256", "namespaces"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: required")
        if name in names:
            raise ConfigError(f"{where}.name: {name!r} appears twice")
        names.add(name)
        namespaces = raw.get("namespaces")
        if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
            raise ConfigError(f"{where}.namespaces: required, a list of namespace patterns")
        entries.append(
            _Entry(
                name=name,
                namespaces=tuple(validate_pattern(n) for n in namespaces),
                token_sha256=_sha256_field(raw, "token", where),
                password_sha256=_sha256_field(raw, "password", where),
            )
        )
    return entries


class Authenticator:
    """Turns request headers into an :class:`Identity`, per ``search.auth``."""

    def __init__(self, config: AuthConfig) -> None:
        self.mode = config.mode
        self._config = config
        self._path = Path(config.secrets_file) if config.secrets_file else None
        self._entries: list[_Entry] = []
        self._mtime_ns = -1
        self._checked = 0.0
        self._proxies = [ipaddress.ip_network(net, strict=False) for net in config.trusted_proxies]
        self._anonymous = Identity("anonymous", tuple(validate_pattern(n) for n in config.anonymous_namespaces))
        if self.mode != "none":
            if self._path is None:
                raise ConfigError(
                    f"search.auth.mode is {self.mode} but search.auth.secrets_file is empty; "
                    "set search.auth.mode: none to serve without authentication"
                )
            self._reload(force=True)

    def _reload(self, *, force: bool = False) -> None:
        assert self._path is not None
        now = time.monotonic()
        if not force and now - self._checked < _RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError as exc:
            if force:
                raise ConfigError(f"cannot read auth secrets file {self._path}: {exc.strerror}") from exc
            return  # keep the last good identities while a Secret is being swapped
        if mtime == self._mtime_ns:
            return
        try:
            self._entries = load_identities(self._path)
        except ConfigError:
            if force:
                raise
            return  # a half-written file: keep the last good identities
        self._mtime_ns = mtime

    def authenticate(self, headers: Mapping[str, str], client_host: str | None) -> Identity:
        """The caller's identity; :class:`AuthError` when it cannot be established."""
        if self.mode == "none":
            return self._anonymous
        self._reload()
        if self.mode == "header":
            return self._from_header(headers, client_host)
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if not credentials:
            raise AuthError("authentication required", reason="missing")
        if self.mode == "token":
            if scheme.lower() != "bearer":
                raise AuthError("expected an Authorization: Bearer token", reason="invalid")
            return self._by_token(credentials.strip())
        if scheme.lower() != "basic":
            raise AuthError("expected Authorization: Basic credentials", reason="invalid")
        return self._by_password(credentials.strip())

    def _by_token(self, token: str) -> Identity:
        digest = hashlib.sha256(token.encode()).digest()
        found: _Entry | None = None
        for entry in self._entries:  # compare with every entry: no early exit timing
            if entry.token_sha256 is not None and hmac.compare_digest(digest, entry.token_sha256):
                found = entry
        if found is None:
            raise AuthError("invalid token", reason="invalid")
        return Identity(found.name, found.namespaces)

    def _by_password(self, credentials: str) -> Identity:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials", reason="invalid") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError("malformed Basic credentials", reason="invalid")
        digest = hashlib.sha256(password.encode()).digest()
        for entry in self._entries:
            if entry.name == user and entry.password_sha256 is not None:
                if hmac.compare_digest(digest, entry.password_sha256):
                    return Identity(entry.name, entry.namespaces)
                break
        raise AuthError("invalid user name or password", reason="invalid")

    def _from_header(self, headers: Mapping[str, str], client_host: str | None) -> Identity:
        try:
            client = ipaddress.ip_address(client_host or "")
        except ValueError:
            raise AuthError("request did not come from a trusted proxy", reason="untrusted") from None
        if not any(client in network for network in self._proxies):
            raise AuthError("request did not come from a trusted proxy", reason="untrusted")
        user = headers.get(self._config.trusted_header.lower(), "").strip()
        if not user:
            raise AuthError(f"missing {self._config.trusted_header} header", reason="missing")
        for entry in self._entries:
            if entry.name == user:
                return Identity(entry.name, entry.namespaces)
        raise AuthError(f"user {user!r} has no access to podlog", status=403, reason="unknown")
