"""Password hashing: argon2id hashes, their verification, and `podlog search hash-password`."""

from __future__ import annotations

from click.testing import CliRunner

from podlog.cli import cli
from search.passwords import VerifiedCache, hash_password, verify_password


def test_verify_accepts_the_password_and_refuses_others() -> None:
    """A hash verifies its password only; no hash (an unknown user) never verifies."""
    hashed = hash_password("correct-horse")
    assert verify_password(hashed, "correct-horse")
    assert not verify_password(hashed, "correct-horsE")
    assert not verify_password(None, "correct-horse")
    assert not verify_password("$argon2id$garbage", "correct-horse")


def test_verified_cache_is_keyed_by_password_and_hash() -> None:
    """A cached success holds only for the same password and the same stored hash."""
    cache = VerifiedCache(ttl_seconds=60)
    cache.put("alice", "correct-horse", "$h1")
    assert cache.get("alice", "correct-horse", "$h1")
    assert not cache.get("alice", "wrong-horse", "$h1")
    assert not cache.get("alice", "correct-horse", "$h2")  # the hash was rotated
    cache.clear()
    assert not cache.get("alice", "correct-horse", "$h1")


def test_hash_password_command_prints_a_hash_that_verifies() -> None:
    """`podlog search hash-password --stdin` prints an argon2id hash of the line it reads."""
    result = CliRunner().invoke(cli, ["search", "hash-password", "--stdin"], input="correct-horse\n")
    assert result.exit_code == 0, result.output
    printed = result.output.strip()
    assert printed.startswith("$argon2id$") and verify_password(printed, "correct-horse")


def test_hash_password_command_prompts_twice_and_refuses_short_passwords() -> None:
    """Without --stdin it prompts with confirmation; a short password is an error, not a hash."""
    ok = CliRunner().invoke(cli, ["search", "hash-password"], input="correct-horse\ncorrect-horse\n")
    assert ok.exit_code == 0 and "$argon2id$" in ok.output
    short = CliRunner().invoke(cli, ["search", "hash-password", "--stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 8" in short.output
