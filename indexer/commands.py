"""Admin commands: ``podlog dlq list|replay`` and ``podlog retention plan|apply``."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
import structlog
from opensearchpy.exceptions import OpenSearchException

from indexer.dlq import (
    DeadLetter,
    count_expired_dead_letters,
    expire_dead_letters,
    list_dead_letters,
    replay_dead_letters,
)
from indexer.retention import apply_retention, ensure_ism_policies, list_log_indices, plan_retention
from indexer.templates import detect_capabilities, open_client
from podlog.logging import configure_logging
from podlog.options import config_option, settings_or_exit
from podlog.settings import Settings

__all__ = ["dlq", "retention"]

def _settings(config_path: Path | None) -> Settings:
    settings = settings_or_exit(config_path)
    # Self-logs go to stderr, and only warnings: stdout is the command's answer.
    # (Left alone when embedded, e.g. under a test runner that replaced stderr.)
    if not structlog.is_configured() and sys.stderr is sys.__stderr__:
        configure_logging("warning", fmt=settings.podlog.log_format)
        # Expected 404s (no DLQ yet, no ISM plugin) are answers here, not warnings.
        logging.getLogger("opensearch").setLevel(logging.ERROR)
    return settings


def _cluster_error(exc: OpenSearchException) -> click.ClickException:
    return click.ClickException(f"OpenSearch request failed: {exc}")


@click.group()
def dlq() -> None:
    """Inspect and replay documents the indexer could not index."""


@dlq.command("list")
@config_option
@click.option("--limit", default=50, show_default=True, help="Most dead letters to show.")
@click.option("--namespace", default=None, help="Only dead letters of this namespace.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, record included.")
def dlq_list(config_path: Path | None, limit: int, namespace: str | None, as_json: bool) -> None:
    """Newest dead letters first: when, why, and where in Kafka they came from."""
    settings = _settings(config_path)
    client = open_client(settings.indexer.opensearch)
    try:
        letters = list_dead_letters(client, settings.indexer.opensearch.index_prefix, limit=limit, namespace=namespace)
    except OpenSearchException as exc:
        raise _cluster_error(exc) from exc
    finally:
        client.close()
    if as_json:
        for letter in letters:
            click.echo(orjson.dumps({"id": letter.doc_id, **letter.source}).decode())
        return
    if not letters:
        click.echo("no dead letters")
        return
    click.echo(f"{'time':24}  {'id':40}  {'namespace':20}  {'kafka':28}  reason")
    for letter in letters:
        click.echo(_row(letter))


def _row(letter: DeadLetter) -> str:
    src = letter.source
    kafka = src.get("kafka") or {}
    where = f"{kafka.get('topic', '')}/{kafka.get('partition', '')}@{kafka.get('offset', '')}"
    reason = f"{src.get('error_type', '')}: {src.get('reason', '')}".replace("\n", " ")
    if src.get("body_omitted"):
        reason = f"[record omitted, {src.get('body_bytes', '?')} bytes] {reason}"
    return (
        f"{src.get('@timestamp', '')!s:24}  {letter.doc_id:40}  "
        f"{src.get('namespace', '')!s:20}  {where:28}  {reason[:160]}"
    )


@dlq.command("replay")
@config_option
@click.option("--id", "ids", multiple=True, help="Replay only this dead letter (repeatable).")
@click.option("--namespace", default=None, help="Only dead letters of this namespace.")
@click.option("--limit", default=10000, show_default=True, help="Most dead letters to replay.")
def dlq_replay(config_path: Path | None, ids: tuple[str, ...], namespace: str | None, limit: int) -> None:
    """Index dead letters again (after a mapping fix); those that now succeed leave the DLQ."""
    settings = _settings(config_path)
    try:
        result = asyncio.run(
            replay_dead_letters(
                settings.indexer,
                settings.retention,
                ids=list(ids),
                namespace=namespace,
                limit=limit,
            )
        )
    except OpenSearchException as exc:
        raise _cluster_error(exc) from exc
    click.echo(
        f"replayed {result.replayed}: {result.indexed} indexed, "
        f"{result.already_present} already present, {result.still_dead} still dead-lettered, "
        f"{result.skipped} not replayable"
    )


@click.group()
def retention() -> None:
    """Show and apply retention: whole expired daily indices per retention class."""


def _fmt_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"


@retention.command("plan")
@config_option
@click.option("--at", "at", default=None, help="Evaluate at this UTC time (ISO 8601) instead of now.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per index.")
def retention_plan(config_path: Path | None, at: str | None, as_json: bool) -> None:
    """Every log index, its class and when it expires; expired ones are marked DELETE."""
    settings = _settings(config_path)
    now = _parse_at(at)
    prefix = settings.indexer.opensearch.index_prefix
    client = open_client(settings.indexer.opensearch)
    try:
        plan = plan_retention(list_log_indices(client, prefix), prefix, settings.retention, now)
        caps = detect_capabilities(client, settings.indexer.opensearch)
    except OpenSearchException as exc:
        raise _cluster_error(exc) from exc
    finally:
        client.close()
    if as_json:
        for entry in plan:
            click.echo(orjson.dumps(_entry_json(entry)).decode())
        return
    classes = ", ".join(f"{k}={v:g}d" for k, v in sorted(settings.retention.classes.items()))
    mode = "ISM policies delete them" if caps.ism else "`podlog retention apply` deletes them"
    click.echo(f"retention classes: {classes}; default {settings.retention.default_class}; {mode}")
    if not plan:
        click.echo("no log indices")
        return
    for entry in plan:
        when = entry.expires_at.isoformat() if entry.expires_at else "never (unknown class)"
        action = "DELETE" if entry.expired else "keep"
        click.echo(
            f"{action:6}  {entry.index:50}  {entry.retention_class:10}  expires {when}  "
            f"{entry.docs} docs  {_fmt_bytes(entry.size_bytes)}"
        )


def _entry_json(entry: Any) -> dict[str, Any]:
    return {
        "index": entry.index,
        "retention_class": entry.retention_class,
        "day": entry.day.date().isoformat(),
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
        "expired": entry.expired,
        "docs": entry.docs,
        "size_bytes": entry.size_bytes,
    }


def _parse_at(at: str | None) -> datetime:
    if at is None:
        return datetime.now(tz=UTC)
    try:
        parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {at}", param_hint="--at") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@retention.command("apply")
@config_option
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
def retention_apply(config_path: Path | None, dry_run: bool) -> None:
    """Delete expired log indices (where ISM is available, update the policies instead)
    and dead letters older than ``indexer.dead_letter_days``."""
    settings = _settings(config_path)
    opensearch = settings.indexer.opensearch
    prefix = opensearch.index_prefix
    letter_days = settings.indexer.dead_letter_days
    verb = "would delete" if dry_run else "deleted"
    client = open_client(opensearch)
    try:
        caps = detect_capabilities(client, opensearch)
        now = datetime.now(tz=UTC)
        if caps.ism:
            if dry_run:
                click.echo("ISM is available: policies would be created or updated")
            else:
                written = ensure_ism_policies(client, opensearch, settings.retention)
                click.echo(f"ISM manages retention; policies updated: {', '.join(written) or 'none'}")
        else:
            if dry_run:
                plan = plan_retention(list_log_indices(client, prefix), prefix, settings.retention, now)
                expired = [e for e in plan if e.expired]
            else:
                expired = apply_retention(client, prefix, settings.retention, now)
            for entry in expired:
                click.echo(f"{verb} {entry.index} ({entry.retention_class}, {entry.docs} docs)")
            click.echo(f"{verb} {len(expired)} expired indices")
        if letter_days > 0:
            if dry_run:
                letters = count_expired_dead_letters(client, prefix, letter_days, now)
            else:
                letters = expire_dead_letters(client, prefix, letter_days, now)
            click.echo(f"{verb} {letters} dead letters older than {letter_days:g} days")
    except OpenSearchException as exc:
        raise _cluster_error(exc) from exc
    finally:
        client.close()
