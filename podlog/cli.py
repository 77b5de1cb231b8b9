"""The one ``podlog`` command, and the composition of each process.

``agent``   collector + spool + Kafka shipper (the DaemonSet process)
``indexer`` Kafka consumer group -> OpenSearch (a Deployment)
``search``  HTTP API and page over OpenSearch (a Deployment)
``run``     everything in one process on the embedded index, no servers

Each ``build_*`` function below is the wiring of one process, readable top to
bottom; the parts it wires know each other only through :mod:`podlog.protocols`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from podlog.allocator import HeapTrimmer, tune_malloc_as_configured
from podlog.config import describe, field_default
from podlog.errors import ConfigError
from podlog.lifecycle import Health, Service, run_services
from podlog.logging import configure_logging, get_logger
from podlog.ops import OpsServer
from podlog.options import config_option, settings_or_exit
from podlog.settings import Settings
from search.commands import hash_password_command

__all__ = ["build_agent", "build_indexer", "build_run", "build_search", "main"]

log = get_logger("podlog.cli")

def _ops(settings: Settings, health: Health) -> list[Service]:
    listen = settings.podlog.http_listen
    return [OpsServer(listen, health)] if listen else []


def build_agent(settings: Settings, health: Health) -> list[Service]:
    """collector -> spool -> Kafka, with checkpoints moved by Kafka's acknowledgements."""
    from collector.kube.enrich import build_enricher
    from collector.pipeline import Collector
    from shipper.kafka import KafkaTransport
    from shipper.shipper import Shipper
    from shipper.spool import Spool

    state = Path(settings.podlog.state_dir)
    enricher, kube_services = build_enricher(settings.podlog, settings.kubernetes, health)
    spool = Spool(settings.shipper.spool, state / "spool",
                  message_max_bytes=settings.shipper.kafka.max_message_bytes)
    collector = Collector(settings.podlog, settings.collector, sink=spool, enricher=enricher)
    transport = KafkaTransport(settings.shipper.kafka)
    shipper = Shipper(settings.shipper, spool, transport, acks=collector.acks, health=health)
    # Started in this order, stopped in reverse: collector first (drain, flush,
    # spool fsync), then the shipper (flush producer, last checkpoints).
    return [*_ops(settings, health), *kube_services, shipper, collector]


def build_indexer(settings: Settings, health: Health) -> list[Service]:
    """Kafka consumer group -> OpenSearch bulk writes."""
    from indexer.consumer import Indexer

    indexer = Indexer(settings.podlog, settings.indexer, settings.retention, health=health)
    return [*_ops(settings, health), indexer]


def build_search(settings: Settings, health: Health) -> list[Service]:
    """The search API and page over OpenSearch."""
    from search.service import SearchService, open_backend

    backend = open_backend(settings)
    return [SearchService(settings.search, backend, health=health)]


def build_run(settings: Settings, health: Health) -> list[Service]:
    """Single node: collector -> spool -> embedded index <- search, in one process."""
    from collector.kube.enrich import build_enricher
    from collector.pipeline import Collector
    from podlog.single_node import run_extras
    from search.backends.embedded import EmbeddedIndex
    from search.service import SearchService
    from shipper.embedded import EmbeddedTransport
    from shipper.shipper import Shipper
    from shipper.spool import Spool

    state = Path(settings.podlog.state_dir)
    index = EmbeddedIndex(settings.embedded, settings.retention, state)
    enricher, kube_services = build_enricher(settings.podlog, settings.kubernetes, health)
    spool = Spool(settings.shipper.spool, state / "spool")
    collector = Collector(settings.podlog, settings.collector, sink=spool, enricher=enricher)
    shipper = Shipper(
        settings.shipper, spool, EmbeddedTransport(index), acks=collector.acks, health=health
    )
    search = SearchService(settings.search, index, health=health)
    # run_extras: the search page URL (once listening) and, with --demo, the log generator.
    return [index, search, *run_extras(settings, search), *kube_services, shipper, collector]


def _serve(settings: Settings, build: Callable[[Settings, Health], list[Service]]) -> None:
    configure_logging(settings.podlog.log_level, fmt=settings.podlog.log_format)
    common = settings.podlog
    tuned = tune_malloc_as_configured(common)
    health = Health()

    async def main() -> None:
        services = build(settings, health)
        if tuned and common.heap_trim_idle_seconds > 0:
            # Last to start, first to stop; it only ever gives memory back.
            services.append(HeapTrimmer(common.heap_trim_idle_seconds))
        await run_services(services, grace_seconds=settings.podlog.shutdown_grace_seconds)

    try:
        asyncio.run(main())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


class _Commands(click.Group):
    """The command group, with the indexer's admin commands imported only when one is run (or
    listed): importing them registers the indexer's metrics, which an agent must not export."""

    _LAZY = ("dlq", "retention")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._LAZY and cmd_name not in self.commands:
            try:
                from indexer import commands
            except ImportError as exc:  # a component's admin commands failed to import
                print(f"podlog: warning: {cmd_name} is unavailable: {exc}", file=sys.stderr)
                return None
            self.add_command(commands.dlq)
            self.add_command(commands.retention)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="podlog")
def cli() -> None:
    """podlog: collect, ship, index and search Kubernetes container logs."""


@cli.command()
@config_option
def agent(config_path: Path | None) -> None:
    """Collector and shipper: tail container logs on this node into Kafka."""
    _serve(settings_or_exit(config_path), build_agent)


@cli.command()
@config_option
def indexer(config_path: Path | None) -> None:
    """Consume records from Kafka and bulk-write them to OpenSearch."""
    _serve(settings_or_exit(config_path), build_indexer)


@cli.group(invoke_without_command=True)
@config_option
@click.pass_context
def search(ctx: click.Context, config_path: Path | None) -> None:
    """Serve the search API and web page over OpenSearch (or run one of its commands)."""
    if ctx.invoked_subcommand is None:
        _serve(settings_or_exit(config_path), build_search)


search.add_command(hash_password_command)


@cli.command()
@config_option
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Read *.log files under this directory instead of /var/log/containers.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State and index directory (default ./.podlog).")
@click.option("--listen", default=None, help="Search page address (default 127.0.0.1:8080).")
@click.option("--demo", is_flag=True, help="Write realistic demo container logs and read those.")
def run(
    config_path: Path | None, logs: Path | None, data_dir: Path | None, listen: str | None, demo: bool
) -> None:
    """Everything in one process on the embedded index: no Kafka, no OpenSearch."""
    from podlog.single_node import prepare_run

    settings = prepare_run(settings_or_exit(config_path), logs=logs, data_dir=data_dir, listen=listen, demo=demo)
    _serve(settings, build_run)


@cli.group()
def alerts() -> None:
    """Alert rules on log queries (docs/alerts.md)."""


@alerts.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def alerts_check(paths: tuple[Path, ...]) -> None:
    """Validate rules files (or directories of them): exit 1 naming the rule, the key and the position."""
    from search.alerts.rules import RuleError, load_rules

    failed = 0
    for path in paths:
        try:
            rules = load_rules(path)
        except RuleError as exc:
            failed += 1
            click.echo(str(exc), err=True)
            continue
        click.echo(f"{path}: ok ({len(rules)} rules)")
    if failed:
        raise click.ClickException(f"{failed} of {len(paths)} rules file(s) did not load")


@alerts.command("export")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["opensearch-monitors"]), required=True,
              help="opensearch-monitors: bodies of POST _plugins/_alerting/monitors, as a JSON list.")
@click.option("--index-prefix", default="podlog", show_default=True, help="Prefix of podlog's indices.")
def alerts_export(paths: tuple[Path, ...], fmt: str, index_prefix: str) -> None:
    """Write the rules of PATHS as OpenSearch Alerting monitors (JSON) to stdout."""
    import json

    from search.alerts.export import monitors_of
    from search.alerts.rules import RuleError, load_rules

    rules = []
    for path in paths:
        try:
            rules += load_rules(path)
        except RuleError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(monitors_of(rules, index_prefix), indent=2))


@cli.group()
def config() -> None:
    """Validate and document configuration."""


@config.command("check")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def config_check(path: Path) -> None:
    """Validate a config file (with PODLOG_* overrides), or a kustomize overlay directory.

    An overlay is rendered with `kubectl kustomize`: the podlog config its
    ConfigMap carries is validated with each pod's PODLOG_* variables, and its
    ServiceMonitors, PodMonitors and PrometheusRules are checked for a
    namespace, a selector that reaches a rendered target, and the port they
    scrape.  Exit 1 with one line per problem.
    """
    if not path.is_dir():
        settings_or_exit(path)
        click.echo(f"{path}: ok")
        return
    from podlog.overlay_check import KUSTOMIZATION_FILES, check_overlay, is_overlay

    if not is_overlay(path):
        raise click.ClickException(
            f"{path} is a directory without a kustomization ({', '.join(KUSTOMIZATION_FILES)}): "
            "pass a config file or a kustomize overlay"
        )
    try:
        report = check_overlay(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    for problem in report.problems:
        click.echo(f"{path}: {problem}", err=True)
    if report.problems:
        raise click.ClickException(f"{path}: {len(report.problems)} problem(s) in {report.objects} rendered objects")
    click.echo(f"{path}: ok ({report.objects} objects rendered)")
    for line in report.summary:
        click.echo(f"  {line}")


@config.command("docs")
def config_docs() -> None:
    """Print docs/configuration.md: every setting, its type, default and meaning."""
    click.echo(render_config_docs(), nl=False)


def render_config_docs() -> str:
    """Markdown table of every setting, generated from the config dataclasses."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `podlog config docs` from the config dataclasses; a test fails when",
        "this file is stale. Every key can be overridden by an environment variable",
        "`PODLOG_<SECTION>__<KEY>` (upper case, `__` between levels).",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for key, type_name, default, doc in describe(Settings):
        shown = repr(default) if not isinstance(default, str) else f'"{default}"'
        lines.append(f"| `{key}` | {type_name} | `{shown}` | {doc} |")
    return "\n".join(lines) + "\n"


@config.command("example")
def config_example() -> None:
    """Print podlog.example.yaml: every setting at its default, with its doc."""
    click.echo(render_example_config(), nl=False)


def render_example_config() -> str:
    """A YAML config with every setting at its default, each under its doc comment."""
    out = [
        "# podlog example configuration: every setting at its default.",
        "# Generated by `podlog config example`; see docs/configuration.md.",
        "# Any key can be overridden with PODLOG_<SECTION>__<KEY> environment variables.",
    ]
    _example_lines(Settings, 0, out)
    return "\n".join(out) + "\n"


def _example_lines(cls: type[Any], depth: int, out: list[str]) -> None:
    indent = "  " * depth
    for field in dataclasses.fields(cls):
        doc = str(field.metadata.get("doc", ""))
        value = field_default(field)
        if dataclasses.is_dataclass(value):
            out.append(f"{indent}# {doc}")
            out.append(f"{indent}{field.name}:")
            _example_lines(type(value), depth + 1, out)
            continue
        out.append(f"{indent}# {doc}")
        dumped = yaml.safe_dump({field.name: value}, default_flow_style=True, width=1000).strip()
        out.append(f"{indent}{dumped.removeprefix('{').removesuffix('}')}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``podlog`` console script."""
    try:
        cli.main(args=argv, prog_name="podlog", standalone_mode=False)
    except click.exceptions.Abort:
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
