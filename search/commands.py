"""Admin commands of the search side: ``podlog search hash-password``."""

from __future__ import annotations

import sys

import click

from search.passwords import MIN_PASSWORD_LENGTH, hash_password

__all__ = ["hash_password_command"]


@click.command("hash-password")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)
def hash_password_command(from_stdin: bool) -> None:
    """Print an argon2id hash of a password, for password_hash in the secrets file."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    click.echo(hash_password(password))
