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
from indexer.retention import (
    IndexExpiry,
    IsmAction,
    apply_ism,
    apply_retention,
    backstop_hours,
    index_creation_dates,
    list_log_indices,
    plan_ism,
    plan_retention,
)
from indexer.templates import Capabilities, detect_capabilities, open_client
from podlog.logging import configure_logging
from podlog.options import config_option, settings_or_exit
from podlog.retention import RetentionConfig
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
        f"{result.skipped} not replayable, {result.expired} records past their retention (not indexed)"
    )


@click.group()
def retention() -> None:
    """Show and apply retention: expired daily indices go whole, the day a class's
    retention ends in is trimmed, and ISM (where installed) is kept in step."""


def _fmt_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"


def _iso_ns(value: int) -> str:
    return datetime.fromtimestamp(value / 1e9, tz=UTC).isoformat(timespec="seconds")


def _describe(retention_config: RetentionConfig, caps: Capabilities) -> str:
    classes = ", ".join(f"{k}={v:g}d" for k, v in sorted(retention_config.classes.items()))
    line = (
        f"retention classes: {classes}; default {retention_config.default_class}; "
        "the retention pass deletes by the day each index holds"
    )
    if caps.ism:
        ages = ", ".join(f"{k}={backstop_hours(v)}h" for k, v in sorted(retention_config.classes.items()))
        line += f"; ISM backstop deletes by index age ({ages})"
    return line


def _index_line(entry: IndexExpiry) -> str:
    when = entry.expires_at.isoformat() if entry.expires_at else "never"
    extra = ""
    if entry.action == "TRIM" and entry.trim_before_ns is not None:
        extra = f"  deletes documents before {_iso_ns(entry.trim_before_ns)}"
    if entry.ism_deletes_at is not None:
        extra += f"  ISM deletes {entry.ism_deletes_at.isoformat(timespec='seconds')}"
    return (
        f"{entry.action:6}  {entry.index:50}  {entry.retention_class:10}  expires {when}  "
        f"{entry.docs} docs  {_fmt_bytes(entry.size_bytes)}{extra}"
    )


def _ism_line(action: IsmAction) -> str:
    return f"ISM     {action.kind.replace('_', '-'):14}  {action.target:50}  {action.policy}  ({action.detail})"


@retention.command("plan")
@config_option
@click.option("--at", "at", default=None, help="Evaluate at this UTC time (ISO 8601) instead of now.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per index and per ISM request.")
def retention_plan(config_path: Path | None, at: str | None, as_json: bool) -> None:
    """What `retention apply` (and the indexer's pass) and ISM will do: every log index with
    DELETE, TRIM or keep, and every ISM request apply makes."""
    settings = _settings(config_path)
    now = _parse_at(at)
    opensearch = settings.indexer.opensearch
    prefix = opensearch.index_prefix
    client = open_client(opensearch)
    try:
        caps = detect_capabilities(client, opensearch)
        created = index_creation_dates(client, prefix) if caps.ism else None
        plan = plan_retention(list_log_indices(client, prefix), prefix, settings.retention, now, created=created)
        ism = plan_ism(client, opensearch, settings.retention) if caps.ism else []
    except OpenSearchException as exc:
        raise _cluster_error(exc) from exc
    finally:
        client.close()
    if as_json:
        for entry in plan:
            click.echo(orjson.dumps(_entry_json(entry)).decode())
        for action in ism:
            click.echo(orjson.dumps(_ism_json(action)).decode())
        return
    click.echo(_describe(settings.retention, caps))
    if not plan:
        click.echo("no log indices")
    for entry in plan:
        click.echo(_index_line(entry))
    for action in ism:
        click.echo(_ism_line(action))


def _entry_json(entry: IndexExpiry) -> dict[str, Any]:
    return {
        "index": entry.index,
        "retention_class": entry.retention_class,
        "day": entry.day.date().isoformat(),
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
        "expired": entry.expired,
        "action": entry.action,
        "trim_before_ns": entry.trim_before_ns if entry.action == "TRIM" else None,
        "ism_deletes_at": entry.ism_deletes_at.isoformat() if entry.ism_deletes_at else None,
        "docs": entry.docs,
        "size_bytes": entry.size_bytes,
    }


def _ism_json(action: IsmAction) -> dict[str, Any]:
    return {"ism": action.kind, "target": action.target, "policy": action.policy, "detail": action.detail}


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
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
def retention_apply(config_path: Path | None, dry_run: bool) -> None:
    """Delete expired log indices, trim the day each class's retention ends in, bring ISM
    policies and managed indices to the configured classes (where ISM is installed), and
    delete dead letters older than ``indexer.dead_letter_days``."""
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
            actions = plan_ism(client, opensearch, settings.retention) if dry_run else apply_ism(
                client, opensearch, settings.retention
            )
            for action in actions:
                click.echo(("would: " if dry_run else "done: ") + _ism_line(action))
            click.echo(f"{'would make' if dry_run else 'made'} {len(actions)} ISM requests")
        if dry_run:
            plan = plan_retention(list_log_indices(client, prefix), prefix, settings.retention, now)
            expired = [e for e in plan if e.action == "DELETE"]
            trimmed = [(e, e.docs) for e in plan if e.action == "TRIM"]
        else:
            applied = apply_retention(client, prefix, settings.retention, now)
            expired, trimmed = applied.deleted, applied.trimmed
        for entry in expired:
            click.echo(f"{verb} {entry.index} ({entry.retention_class}, {entry.docs} docs)")
        click.echo(f"{verb} {len(expired)} expired indices")
        for entry, count in trimmed:
            assert entry.trim_before_ns is not None
            what = f"documents before {_iso_ns(entry.trim_before_ns)}" if dry_run else f"{count} documents"
            click.echo(f"{'would trim' if dry_run else 'trimmed'} {entry.index}: {what}")
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
