"""Authentication modes, the secrets file and its reloads, and password hashes."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from podlog.errors import ConfigError
from podlog.metrics import sample
from search.auth import Authenticator, AuthError, namespace_allowed
from search.config import AuthConfig
from search.passwords import hash_password

ALICE_HASH = hash_password("correct-horse")

SECRETS = """
identities:
  - name: team-a
    token: team-a-token-1
    namespaces: ["a", "a-*"]
  - name: hashed
    token_sha256: {digest}
    namespaces: ["b"]
  - name: alice
    password_hash: {alice}
    namespaces: ["*"]
"""


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    path = tmp_path / "identities.yaml"
    digest = hashlib.sha256(b"hashed-token-2").hexdigest()
    path.write_text(SECRETS.format(digest=digest, alice=ALICE_HASH))
    return path


class Clock:
    """A monotonic clock the test moves, patched into the secrets reload check."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr("search.secrets.time.monotonic", lambda: self.now)

    def advance(self, seconds: float = 5.0) -> None:
        self.now += seconds


def token(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def test_tokens_plain_and_hashed_map_to_identities(secrets: Path) -> None:
    """Plain and sha256 tokens authenticate as their identity with its namespace patterns."""
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    team = await auth.authenticate(token("team-a-token-1"), "10.0.0.1")
    assert (team.name, team.namespaces) == ("team-a", ("a", "a-*"))
    assert (await auth.authenticate(token("hashed-token-2"), None)).name == "hashed"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"authorization": "Bearer nope-nope-nope"}, "invalid"),
        ({"authorization": "Basic YWxpY2U6Y29ycmVjdC1ob3JzZQ=="}, "invalid"),
    ],
)
async def test_token_mode_refuses_the_rest(secrets: Path, headers: dict[str, str], reason: str) -> None:
    """No header, an unknown token or another scheme is a 401 with a bounded reason."""
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    with pytest.raises(AuthError) as caught:
        await auth.authenticate(headers, None)
    assert caught.value.status == 401
    assert caught.value.reason == reason


async def test_basic_mode_checks_user_and_password(secrets: Path) -> None:
    """Basic credentials authenticate by name and password; a wrong password fails."""
    auth = Authenticator(AuthConfig(mode="basic", secrets_file=str(secrets)))
    good = base64.b64encode(b"alice:correct-horse").decode()
    assert (await auth.authenticate({"authorization": f"Basic {good}"}, None)).namespaces == ("*",)
    assert (await auth.authenticate({"authorization": f"Basic {good}"}, None)).name == "alice"  # cached
    bad = base64.b64encode(b"alice:wrong").decode()
    with pytest.raises(AuthError):
        await auth.authenticate({"authorization": f"Basic {bad}"}, None)
    with pytest.raises(AuthError, match="malformed"):
        await auth.authenticate({"authorization": "Basic !!!"}, None)


async def test_header_mode_trusts_only_listed_proxies(secrets: Path) -> None:
    """The user header counts from a trusted proxy address; unknown users get 403."""
    config = AuthConfig(mode="header", secrets_file=str(secrets), trusted_proxies=["10.1.0.0/16"])
    auth = Authenticator(config)
    assert (await auth.authenticate({"x-forwarded-user": "alice"}, "10.1.2.3")).name == "alice"
    with pytest.raises(AuthError) as untrusted:
        await auth.authenticate({"x-forwarded-user": "alice"}, "192.168.0.9")
    assert untrusted.value.reason == "untrusted"
    with pytest.raises(AuthError) as unknown:
        await auth.authenticate({"x-forwarded-user": "mallory"}, "10.1.2.3")
    assert unknown.value.status == 403


async def test_none_mode_must_be_chosen_and_gives_anonymous_patterns() -> None:
    """Without a secrets file the default mode refuses to start; mode none serves anonymously."""
    with pytest.raises(ConfigError, match=r"auth\.mode: none"):
        Authenticator(AuthConfig())
    auth = Authenticator(AuthConfig(mode="none", anonymous_namespaces=["public-*"]))
    assert (await auth.authenticate({}, None)).namespaces == ("public-*",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("identities: nope", "'identities' list"),
        ("identities:\n  - name: x\n    token: short\n    namespaces: [a]", "at least 8"),
        ("identities:\n  - name: x\n    token: longenough\n    namespaces: ['[ab]']", "may contain only"),
        ("identities:\n  - name: x\n    token: longenough", "namespaces: required"),
        ("identities:\n  - name: x\n    tokn: longenough\n    namespaces: [a]", "unknown key 'tokn'"),
        ("identities:\n  - {name: x, namespaces: [a]}\n  - {name: x, namespaces: [b]}", "appears twice"),
    ],
)
def test_bad_secrets_files_fail_naming_the_entry(tmp_path: Path, content: str, message: str) -> None:
    """A malformed secrets file stops startup with the entry and problem named."""
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        Authenticator(AuthConfig(mode="token", secrets_file=str(path)))


async def test_secrets_file_changes_are_picked_up(secrets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotated Secret takes effect without a restart, and the loaded-at gauge moves."""
    clock = Clock(monkeypatch)
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    secrets.write_text("identities:\n  - {name: new, token: brand-new-token, namespaces: [n]}\n")
    os.utime(secrets, ns=(1, 1))
    clock.advance()
    assert (await auth.authenticate(token("brand-new-token"), None)).name == "new"
    with pytest.raises(AuthError):
        await auth.authenticate(token("team-a-token-1"), None)
    assert sample("podlog_search_secrets_loaded_timestamp_seconds") > 0


async def test_broken_reload_is_logged_once_counted_and_keeps_the_last_good(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken rewrite logs an error naming the file and the problem, counts it once, and old tokens stay."""
    clock = Clock(monkeypatch)
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    before = sample("podlog_search_secrets_reload_errors_total", {"reason": "invalid"})
    secrets.write_text("identities: [")
    os.utime(secrets, ns=(2, 2))
    with capture_logs() as logs:
        for _ in range(3):  # three reload checks of the same broken version: one error
            clock.advance()
            assert (await auth.authenticate(token("team-a-token-1"), None)).name == "team-a"
    failed = [e for e in logs if e["event"] == "secrets_reload_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "error" and failed[0]["path"] == str(secrets)
    assert "invalid YAML" in failed[0]["error"] and "last good identities" in failed[0]["error"]
    assert sample("podlog_search_secrets_reload_errors_total", {"reason": "invalid"}) == before + 1


async def test_deleted_secrets_file_revokes_everything_it_granted(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting the file revokes every identity, loudly; a new file grants again."""
    clock = Clock(monkeypatch)
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    team = await auth.authenticate(token("team-a-token-1"), None)
    before = sample("podlog_search_secrets_reload_errors_total", {"reason": "missing"})
    secrets.unlink()
    clock.advance()
    with capture_logs() as logs, pytest.raises(AuthError):
        await auth.authenticate(token("team-a-token-1"), None)
    assert [e["reason"] for e in logs if e["event"] == "secrets_reload_failed"] == ["missing"]
    assert sample("podlog_search_secrets_reload_errors_total", {"reason": "missing"}) == before + 1
    assert not auth.is_current(team)
    secrets.write_text("identities:\n  - {name: team-a, token: team-a-token-1, namespaces: [a, a-*]}\n")
    clock.advance()
    assert (await auth.authenticate(token("team-a-token-1"), None)).name == "team-a"


async def test_is_current_follows_revocation_and_changed_access(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An identity stays current until its token is removed or its namespaces change."""
    clock = Clock(monkeypatch)
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    team = await auth.authenticate(token("team-a-token-1"), None)
    hashed = await auth.authenticate(token("hashed-token-2"), None)
    digest = hashlib.sha256(b"hashed-token-2").hexdigest()
    secrets.write_text(
        "identities:\n"
        "  - {name: team-a, token: team-a-token-1, namespaces: [a]}\n"
        f"  - {{name: hashed, token_sha256: {digest}, namespaces: [b]}}\n"
    )
    os.utime(secrets, ns=(3, 3))
    assert auth.is_current(team) and auth.is_current(hashed)  # not due yet
    clock.advance()
    assert not auth.is_current(team)  # namespaces narrowed: the old grant is gone
    assert auth.is_current(hashed)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("password_sha256: " + hashlib.sha256(b"correct-horse").hexdigest(), "unsalted hash"),
        ("password: correct-horse", "plain password"),
        ("password_hash: not-a-hash", "argon2id hash"),
        ("password_hash: $argon2id$v=19$m=65536,t=3,p=4$broken", "not a valid argon2id hash"),
    ],
)
def test_unsalted_or_plain_passwords_are_refused_with_a_migration_hint(
    tmp_path: Path, entry: str, message: str
) -> None:
    """Old sha256 and plain password entries stop startup, saying how to migrate."""
    path = tmp_path / "old.yaml"
    path.write_text(f"identities:\n  - name: alice\n    {entry}\n    namespaces: [a]\n")
    with pytest.raises(ConfigError, match=message) as caught:
        Authenticator(AuthConfig(mode="basic", secrets_file=str(path)))
    assert "podlog search hash-password" in str(caught.value)
    assert "identities[0]" in str(caught.value)


def test_password_hashes_are_salted_argon2id() -> None:
    """The same password hashes differently each time, as argon2id."""
    first, second = hash_password("correct-horse"), hash_password("correct-horse")
    assert first != second and first.startswith("$argon2id$")
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")


def test_namespace_patterns_match_like_fnmatch() -> None:
    """* and ? patterns match whole namespace names."""
    assert namespace_allowed("team-a", ["team-*"])
    assert not namespace_allowed("xteam-a", ["team-*"])
    assert namespace_allowed("a1", ["a?"])
