"""The ``saga`` command: the composition root that wires logs, transports and coordinators."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import signal
import sys
from typing import Any

import click

from saga.api.options import HttpSettings, http_options, http_settings
from saga.coordinator import Coordinator
from saga.definition import Saga
from saga.dev import dev, ensure_port_free, serve_http
from saga.errors import SagaError
from saga.log.sql import SqlSagaLog
from saga.log.sql.migrate import head_revision
from saga.ops_cli import COMMANDS as OPS_COMMANDS
from saga.redact import install_log_redaction, redact_text, redact_url
from saga.soak import soak
from saga.transport.nats import NatsTransport
from saga.transport.security import NatsSecurity

DEFAULT_DB = "sqlite:///saga.db"
DEFAULT_NATS = "nats://127.0.0.1:4222"


def load_sagas(spec: str) -> list[Saga]:
    """Load definitions from ``module`` or ``module:attribute`` (as uvicorn and celery do).

    The attribute may be a Saga or an iterable of Sagas; a bare module contributes every Saga
    defined at its top level.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    if attribute:
        try:
            value: Any = getattr(module, attribute)
        except AttributeError as exc:
            raise click.BadParameter(f"{module_name!r} has no attribute {attribute!r}") from exc
        if isinstance(value, Saga):
            found = [value]
        elif isinstance(value, list | tuple | set | frozenset):
            found = list(value)
        else:
            found = [value]
    else:
        found = [v for v in vars(module).values() if isinstance(v, Saga)]
    sagas = [s for s in found if isinstance(s, Saga)]
    if not sagas or len(sagas) != len(found):
        raise click.BadParameter(f"{spec!r} does not name saga definitions")
    return sagas


class _RedactingGroup(click.Group):
    """The ``saga`` group: an error message never shows a credential, whoever raised it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            # A driver's error text may quote a URL it was given, password and all.
            hidden = redact_text(exc.message)
            if hidden == exc.message:
                raise
            kind = click.UsageError if isinstance(exc, click.UsageError) else click.ClickException
            raise kind(hidden) from None


@click.group(cls=_RedactingGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """saga-coordinator: sagas over NATS with a SQL log."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


@main.command()
def demo() -> None:
    """Run a small demo: NATS from the wheel, SQLite, three services, two order sagas."""
    from saga.demo import run_demo

    results = asyncio.run(run_demo(click.echo))
    statuses = sorted(r.status.value for r in results)
    if statuses != ["compensated", "completed"]:
        raise SystemExit(f"demo ended unexpectedly: {statuses}")


NATS_OPTION = click.option(
    "--nats", "nats_url", default=DEFAULT_NATS, show_default=True, envvar="SAGA_NATS_URL",
    show_envvar=True, help="NATS server URL(s), comma-separated.",
)  # fmt: skip
DB_OPTION = click.option(
    "--db", "db_url", default=DEFAULT_DB, show_default=True, envvar="SAGA_DB_URL",
    show_envvar=True, help="Saga log: a SQLite or PostgreSQL URL.",
)  # fmt: skip


@main.command()
@NATS_OPTION
@DB_OPTION
@click.option(
    "--sagas", "saga_specs", multiple=True, required=True, envvar="SAGA_SAGAS",
    show_envvar=True,
    help="module or module:attribute holding saga definitions (repeatable; "
    "space-separated in the environment variable).",
)  # fmt: skip
@http_options
def coordinator(
    nats_url: str, db_url: str, saga_specs: tuple[str, ...], http: str | None, **api: Any
) -> None:
    """Run a coordinator until SIGINT or SIGTERM (with --http, serve the API beside it)."""
    sys.path.insert(0, "")
    sagas = [s for spec in saga_specs for s in load_sagas(spec)]
    serve_http = http_settings(http, **api) if http else None
    if serve_http is not None:
        # Before connecting to anything: a busy port is one line, not a traceback at the end.
        ensure_port_free(serve_http.host, serve_http.port, "--http")
    try:
        asyncio.run(_serve(nats_url, db_url, sagas, serve_http))
    except SagaError as exc:
        raise click.ClickException(str(exc)) from exc


async def _serve(
    nats_url: str, db_url: str, sagas: list[Saga], http: HttpSettings | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    servers = [url.strip() for url in nats_url.split(",") if url.strip()]
    # Credentials and TLS for NATS come from SAGA_NATS_* variables (README: Securing NATS).
    transport = NatsTransport(servers, security=NatsSecurity.from_env())
    coordinator = Coordinator(SqlSagaLog(db_url), transport, sagas=sagas)
    async with coordinator:
        names = ", ".join(f"{s.name} v{s.version}" for s in sagas)
        click.echo(
            f"coordinator running: nats {redact_url(nats_url)}, log {redact_url(db_url)},"
            f" sagas {names}"
        )
        click.echo(f"resumed {coordinator.active_count} unfinished sagas", err=True)
        server = None if http is None else await serve_http(http, coordinator, click.echo)
        try:
            await stop.wait()
        finally:
            if server is not None:
                await server.close()
    click.echo("coordinator stopped")


@main.command("log")
@click.argument("saga_id")
@DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_log(saga_id: str, db_url: str, as_json: bool) -> None:
    """Show one saga's raw event log, read straight from the database (no API needed).

    It only reads: a missing database or an old schema is reported, never created or
    upgraded (``saga migrate`` does that)."""

    async def read() -> None:
        log = SqlSagaLog(db_url, migrate=False)
        try:
            await log.open()
            try:
                record = await log.get(saga_id)
                if record is None:
                    raise click.ClickException(f"no saga {saga_id!r} in {redact_url(db_url)}")
                events = await log.events(saga_id)
            finally:
                await log.close()
        except SagaError as exc:
            raise click.ClickException(str(exc)) from exc
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "saga_id": record.saga_id,
                        "name": record.name,
                        "version": record.version,
                        "status": record.status.value,
                        "input": record.input,
                        "events": [
                            {"seq": e.seq, "type": e.type.value, "at_ms": e.at_ms, "data": e.data}
                            for e in events
                        ],
                    },
                    indent=2,
                )
            )
            return
        from saga.demo import describe

        click.echo(f"saga {record.saga_id}  {record.name} v{record.version}  {record.status.value}")
        for event in events:
            click.echo(describe(event))

    asyncio.run(read())


@main.command("migrate")
@DB_OPTION
def migrate(db_url: str) -> None:
    """Create or upgrade the saga log's schema to this release's, then exit.

    A coordinator does the same when it starts; this does it ahead (before a deploy, or for
    ``saga log``, which never changes a database)."""

    async def upgrade() -> None:
        log = SqlSagaLog(db_url)
        await log.open()
        await log.close()

    try:
        asyncio.run(upgrade())
    except SagaError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"saga log at {redact_url(db_url)}: schema at revision {head_revision()} (newest)")


for _command in OPS_COMMANDS:
    main.add_command(_command)

main.add_command(dev)
main.add_command(soak)

if __name__ == "__main__":
    main()
