"""Password hashes for basic-auth identities: argon2id, salted and slow.

A secrets file carries ``password_hash: $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>``,
made by ``podlog search hash-password``.  Plain passwords and the unsalted
``password_sha256`` of earlier versions are refused when the file is loaded,
with a message that says how to migrate.

Verifying costs about 0.1 s of CPU and 64 MiB by design, so it runs off the
event loop, and a verified credential is remembered for a short while under a
keyed digest (a per-process random key; the password itself is never kept) so
that the page's several requests per search verify once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from podlog.errors import ConfigError

__all__ = [
    "MIGRATE_HINT",
    "VerifiedCache",
    "check_password_hash",
    "hash_password",
    "verify_password",
]

MIGRATE_HINT = (
    "make a salted hash with `podlog search hash-password` and put it in password_hash "
    "(see docs/security.md, Passwords)"
)
"""How to replace a refused password entry; part of every such error."""

MIN_PASSWORD_LENGTH = 8

_HASHER = argon2.PasswordHasher()
"""RFC 9106's second recommended profile: argon2id, t=3, m=64 MiB, p=4."""

_DUMMY_HASH: list[str] = []
"""Verified against for an unknown user, so a missing user costs as much as a wrong password (made once, lazily)."""


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_HASHER.hash(secrets.token_hex(16)))
    return _DUMMY_HASH[0]


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string) of ``password``; ValueError if it is too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def check_password_hash(value: object, where: str) -> str:
    """``value`` if it is an argon2id PHC string; ConfigError naming ``where`` otherwise."""
    if not isinstance(value, str) or not value.startswith("$argon2id$"):
        raise ConfigError(f"{where}: must be an argon2id hash ($argon2id$...); {MIGRATE_HINT}")
    try:
        argon2.extract_parameters(value)
    except (InvalidHashError, ValueError):
        raise ConfigError(f"{where}: is not a valid argon2id hash; {MIGRATE_HINT}") from None
    return value


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown user) spends the same time and says False."""
    try:
        return bool(_HASHER.verify(password_hash or _dummy_hash(), password)) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class VerifiedCache:
    """Credentials verified lately, by keyed digest, each for ``ttl_seconds``."""

    def __init__(self, ttl_seconds: float = 60.0, max_entries: int = 1024) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[bytes, tuple[str, float]] = {}

    def _digest(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()

    def get(self, user: str, password: str, password_hash: str) -> bool:
        """True when this user and password were verified against ``password_hash`` within the TTL."""
        found = self._entries.get(self._digest(user, password))
        if found is None:
            return False
        cached_hash, expires = found
        return cached_hash == password_hash and time.monotonic() < expires

    def put(self, user: str, password: str, password_hash: str) -> None:
        """Remember a successful verification."""
        if len(self._entries) >= self._max:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self._max:
                self._entries.clear()
        self._entries[self._digest(user, password)] = (password_hash, time.monotonic() + self._ttl)

    def clear(self) -> None:
        """Forget everything (the secrets file changed)."""
        self._entries.clear()
