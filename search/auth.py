"""Authentication and namespace authorization for the search API.

One mode per server (``search.auth.mode``):

``token``   ``Authorization: Bearer <token>``, tokens listed in the secrets file
``basic``   ``Authorization: Basic``, user names and argon2id password hashes from the secrets file
``header``  a trusted auth proxy names the user in ``auth.trusted_header``; only
            requests whose TCP peer is in ``auth.trusted_proxies`` are believed
            (forwarding headers such as X-Forwarded-For never change the peer)
``none``    no authentication; everyone sees ``auth.anonymous_namespaces``.
            Only when configured explicitly: the default is ``token``.

Identities come from the secrets file (``search/secrets.py``, which also holds
the reload policy).  Every identity maps to namespace patterns (``*`` and ``?``
wildcards); the API passes them to the backend on every query, histogram,
context, tail and export, so the restriction is enforced on the server.  An
:class:`Identity` carries a digest of the entry that granted it, so a long
request (a live tail) can ask :meth:`Authenticator.is_current` whether that
grant still stands after a reload.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from podlog.errors import ConfigError, PodlogError
from search.config import AuthConfig
from search.namespaces import namespace_allowed, validate_pattern
from search.passwords import VerifiedCache, verify_password
from search.secrets import Entry, SecretsFile, load_identities

__all__ = [
    "AuthError",
    "Authenticator",
    "Identity",
    "load_identities",
    "namespace_allowed",
    "validate_pattern",
]

_VERIFY_CONCURRENCY = 2
"""Password verifications run at once (each takes ~0.1 s of CPU and 64 MiB)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller and the namespaces it may read."""

    name: str
    namespaces: tuple[str, ...]
    """fnmatch-style patterns (``*``, ``?``); ``("*",)`` means every namespace."""
    grant: bytes = b""
    """Digest of the secrets entry that granted this identity; empty in none mode."""


class AuthError(PodlogError):
    """The request is not authenticated (401) or its identity is unknown (403)."""

    def __init__(self, message: str, *, status: int = 401, reason: str = "missing") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        """Bounded label for the failure metric: missing, invalid, untrusted, unknown."""


def _identity(entry: Entry) -> Identity:
    return Identity(entry.name, entry.namespaces, entry.grant)


class Authenticator:
    """Turns request headers into an :class:`Identity`, per ``search.auth``."""

    def __init__(self, config: AuthConfig) -> None:
        self.mode = config.mode
        self._config = config
        self._secrets: SecretsFile | None = None
        self._seen_generation = 0
        self._verified = VerifiedCache()
        self._verifying = asyncio.Semaphore(_VERIFY_CONCURRENCY)
        self._proxies = [ipaddress.ip_network(net, strict=False) for net in config.trusted_proxies]
        self._anonymous = Identity("anonymous", tuple(validate_pattern(n) for n in config.anonymous_namespaces))
        if self.mode != "none":
            if not config.secrets_file:
                raise ConfigError(
                    f"search.auth.mode is {self.mode} but search.auth.secrets_file is empty; "
                    "set search.auth.mode: none to serve without authentication"
                )
            self._secrets = SecretsFile(Path(config.secrets_file), config.reload_seconds)

    @property
    def _entries(self) -> list[Entry]:
        return self._secrets.entries if self._secrets is not None else []

    def refresh(self) -> None:
        """Reload the secrets file if it is due and changed (cheap when not due)."""
        if self._secrets is None:
            return
        self._secrets.refresh()
        if self._secrets.generation != self._seen_generation:
            self._seen_generation = self._secrets.generation
            self._verified.clear()

    def is_current(self, identity: Identity) -> bool:
        """True while the secrets entry that granted ``identity`` is unchanged (always in none mode)."""
        if self.mode == "none":
            return True
        self.refresh()
        return any(hmac.compare_digest(entry.grant, identity.grant) for entry in self._entries)

    async def authenticate(self, headers: Mapping[str, str], client_host: str | None) -> Identity:
        """The caller's identity; :class:`AuthError` when it cannot be established."""
        if self.mode == "none":
            return self._anonymous
        self.refresh()
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
        return await self._by_password(credentials.strip())

    def _by_token(self, token: str) -> Identity:
        digest = hashlib.sha256(token.encode()).digest()
        found: Entry | None = None
        for entry in self._entries:  # compare with every entry: no early exit timing
            if entry.token_sha256 is not None and hmac.compare_digest(digest, entry.token_sha256):
                found = entry
        if found is None:
            raise AuthError("invalid token", reason="invalid")
        return _identity(found)

    async def _by_password(self, credentials: str) -> Identity:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials", reason="invalid") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError("malformed Basic credentials", reason="invalid")
        entry = next((e for e in self._entries if e.name == user and e.password_hash is not None), None)
        stored = entry.password_hash if entry is not None else None
        if entry is not None and stored is not None and self._verified.get(user, password, stored):
            return _identity(entry)
        async with self._verifying:
            ok = await asyncio.to_thread(verify_password, stored, password)
        if not ok or entry is None or stored is None:
            raise AuthError("invalid user name or password", reason="invalid")
        self._verified.put(user, password, stored)
        return _identity(entry)

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
                return _identity(entry)
        raise AuthError(f"user {user!r} has no access to podlog", status=403, reason="unknown")
