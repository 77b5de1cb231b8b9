"""Authentication modes and the secrets file."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from podlog.errors import ConfigError
from search.auth import Authenticator, AuthError, namespace_allowed
from search.config import AuthConfig

SECRETS = """
identities:
  - name: team-a
    token: team-a-token-1
    namespaces: ["a", "a-*"]
  - name: hashed
    token_sha256: {digest}
    namespaces: ["b"]
  - name: alice
    password: correct-horse
    namespaces: ["*"]
"""


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    path = tmp_path / "identities.yaml"
    digest = hashlib.sha256(b"hashed-token-2").hexdigest()
    path.write_text(SECRETS.format(digest=digest))
    return path


def token(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def test_tokens_plain_and_hashed_map_to_identities(secrets: Path) -> None:
    """Plain and sha256 tokens authenticate as their identity with its namespace patterns."""
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    team = auth.authenticate(token("team-a-token-1"), "10.0.0.1")
    assert (team.name, team.namespaces) == ("team-a", ("a", "a-*"))
    assert auth.authenticate(token("hashed-token-2"), None).name == "hashed"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"authorization": "Bearer nope-nope-nope"}, "invalid"),
        ({"authorization": "Basic YWxpY2U6Y29ycmVjdC1ob3JzZQ=="}, "invalid"),
    ],
)
def test_token_mode_refuses_the_rest(secrets: Path, headers: dict[str, str], reason: str) -> None:
    """No header, an unknown token or another scheme is a 401 with a bounded reason."""
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    with pytest.raises(AuthError) as caught:
        auth.authenticate(headers, None)
    assert caught.value.status == 401
    assert caught.value.reason == reason


def test_basic_mode_checks_user_and_password(secrets: Path) -> None:
    """Basic credentials authenticate by name and password; a wrong password fails."""
    auth = Authenticator(AuthConfig(mode="basic", secrets_file=str(secrets)))
    good = base64.b64encode(b"alice:correct-horse").decode()
    assert auth.authenticate({"authorization": f"Basic {good}"}, None).namespaces == ("*",)
    bad = base64.b64encode(b"alice:wrong").decode()
    with pytest.raises(AuthError):
        auth.authenticate({"authorization": f"Basic {bad}"}, None)
    with pytest.raises(AuthError, match="malformed"):
        auth.authenticate({"authorization": "Basic !!!"}, None)


def test_header_mode_trusts_only_listed_proxies(secrets: Path) -> None:
    """The user header counts from a trusted proxy address; unknown users get 403."""
    config = AuthConfig(mode="header", secrets_file=str(secrets), trusted_proxies=["10.1.0.0/16"])
    auth = Authenticator(config)
    assert auth.authenticate({"x-forwarded-user": "alice"}, "10.1.2.3").name == "alice"
    with pytest.raises(AuthError) as untrusted:
        auth.authenticate({"x-forwarded-user": "alice"}, "192.168.0.9")
    assert untrusted.value.reason == "untrusted"
    with pytest.raises(AuthError) as unknown:
        auth.authenticate({"x-forwarded-user": "mallory"}, "10.1.2.3")
    assert unknown.value.status == 403


def test_none_mode_must_be_chosen_and_gives_anonymous_patterns() -> None:
    """Without a secrets file the default mode refuses to start; mode none serves anonymously."""
    with pytest.raises(ConfigError, match=r"auth\.mode: none"):
        Authenticator(AuthConfig())
    auth = Authenticator(AuthConfig(mode="none", anonymous_namespaces=["public-*"]))
    assert auth.authenticate({}, None).namespaces == ("public-*",)


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


def test_secrets_file_changes_are_picked_up(secrets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotated Secret takes effect without a restart; a broken rewrite keeps the last good one."""
    clock = [1000.0]
    monkeypatch.setattr("search.auth.time.monotonic", lambda: clock[0])
    auth = Authenticator(AuthConfig(mode="token", secrets_file=str(secrets)))
    secrets.write_text("identities:\n  - {name: new, token: brand-new-token, namespaces: [n]}\n")
    os.utime(secrets, ns=(1, 1))
    clock[0] += 5
    assert auth.authenticate(token("brand-new-token"), None).name == "new"
    with pytest.raises(AuthError):
        auth.authenticate(token("team-a-token-1"), None)
    secrets.write_text("identities: [")
    os.utime(secrets, ns=(2, 2))
    clock[0] += 5
    assert auth.authenticate(token("brand-new-token"), None).name == "new"


def test_namespace_patterns_match_like_fnmatch() -> None:
    """* and ? patterns match whole namespace names."""
    assert namespace_allowed("team-a", ["team-*"])
    assert not namespace_allowed("xteam-a", ["team-*"])
    assert namespace_allowed("a1", ["a?"])
