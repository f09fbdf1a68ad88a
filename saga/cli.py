"""The ``saga`` command: the composition root that wires logs, transports and coordinators.

Declaring the commands imports only click and the light parts of the library: each command
imports the SQL log, NATS and the HTTP server when it runs, and ``saga dev`` and ``saga soak``
(with the checkout they load) are imported only when they are the command given, so
``saga --help`` and ``saga list`` never load them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from saga import eventloop
from saga.cli_exit import JSON_ERRORS, CliFailure, ExitCode, error_json, exit_codes_help
from saga.cli_options import DEFAULT_DB, DEFAULT_NATS, db_option, http_options, nats_option
from saga.definition import Saga
from saga.errors import SagaError
from saga.log.ownership import DEFAULT_LEASE_MS
from saga.log_options import configure_logging, log_format_option
from saga.ops_cli import COMMANDS as OPS_COMMANDS
from saga.ops_cli import JSON_OPTION, iso_time
from saga.redact import install_log_redaction, redact_text, redact_url

if TYPE_CHECKING:
    from saga.api.options import HttpSettings

__all__ = ["DEFAULT_DB", "DEFAULT_NATS", "LAZY_COMMANDS", "LazyCommand", "load_sagas", "main"]


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


@dataclass(frozen=True, kw_only=True)
class LazyCommand:
    """A sub-command imported only when it runs (click's lazy-loading group pattern)."""

    target: str
    """Where the command is: ``module:attribute``."""
    summary: str
    """Its help's first paragraph, so ``saga --help`` can list it without importing it."""

    def load(self) -> click.Command:
        """Import the command."""
        module_name, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


LAZY_COMMANDS: Mapping[str, LazyCommand] = {
    "dev": LazyCommand(
        target="saga.dev:dev",
        summary="Run NATS, a saga log, a coordinator, the example services and the HTTP API"
        " and dashboard (http://127.0.0.1:8080 unless --http says otherwise) here, until"
        " Ctrl-C.",
    ),
    "bench": LazyCommand(
        target="saga.bench.cli:bench",
        summary="Run a saga workload through a real coordinator, NATS and log, and print its"
        " figures beside the floors (raw NATS request/reply, raw commits) measured in the same"
        " run.",
    ),
    "soak": LazyCommand(
        target="saga.soak:soak",
        summary="Run many order sagas while SIGKILLing and pausing coordinators, then check the"
        " books.",
    ),
}
"""The developer commands: they start processes from a checkout and pull in everything."""


DISTRIBUTION = "saga-coordinator"
"""The package whose version ``saga --version`` prints."""
_RAW_ARGS = "saga.raw_args"
_SCRIPTED = frozenset({*(command.name for command in OPS_COMMANDS), "log", "version"})
"""Commands for scripts: an unexpected failure is one line (or JSON), never a traceback."""


def _fail(ctx: click.Context, message: str, status: int | None, exit_code: int) -> None:
    """Show a failure as one line, or as JSON on stderr after ``--json``, and exit."""
    if _wants_json(ctx):
        click.echo(error_json(message, status=status, exit_code=exit_code), err=True)
    else:
        click.echo(f"Error: {message}", err=True)
    ctx.exit(exit_code)


def _wants_json(ctx: click.Context) -> bool:
    if ctx.meta.get(JSON_ERRORS):
        return True
    # A usage error may come before --json was read: look at what was typed.
    args: list[str] = ctx.meta.get(_RAW_ARGS, [])
    return "--json" in (args[: args.index("--")] if "--" in args else args)


class _SagaGroup(click.Group):
    """The ``saga`` group: loads ``LAZY_COMMANDS`` on demand, shows failures with their exit
    code (as JSON after ``--json``), and an error message never shows a credential, whoever
    raised it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = LAZY_COMMANDS.get(cmd_name)
        if lazy is not None and cmd_name not in self.commands:
            self.add_command(lazy.load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing calls get_command for every name, which would import them all.
        commands = [(name, self._listed(ctx, name)) for name in self.list_commands(ctx)]
        shown = [(name, cmd) for name, cmd in commands if cmd is not None and not cmd.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in shown])

    def _listed(self, ctx: click.Context, name: str) -> click.Command | None:
        lazy = LAZY_COMMANDS.get(name)
        if lazy is not None and name not in self.commands:
            return click.Command(name, help=lazy.summary)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliFailure as exc:
            _fail(ctx, redact_text(exc.message), exc.status, exc.exit_code)
        except click.ClickException as exc:
            # A driver's error text may quote a URL it was given, password and all.
            hidden = redact_text(exc.message)
            if _wants_json(ctx):
                _fail(ctx, redact_text(exc.format_message()), None, exc.exit_code)
            if hidden == exc.message:
                raise
            kind = click.UsageError if isinstance(exc, click.UsageError) else click.ClickException
            raise kind(hidden) from None
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.invoked_subcommand not in _SCRIPTED:
                raise
            message = redact_text(f"unexpected {type(exc).__name__}: {exc}")
            _fail(ctx, message, None, ExitCode.ERROR)


@click.group(cls=_SagaGroup, epilog=exit_codes_help())
@click.version_option(
    package_name=DISTRIBUTION, prog_name=DISTRIBUTION, message="%(prog)s %(version)s"
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """saga-coordinator: sagas over NATS with a SQL log."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


@main.command("version")
@JSON_OPTION
def version(as_json: bool) -> None:
    """Print this release's version, as saga --version does."""
    from importlib.metadata import version as installed

    number = installed(DISTRIBUTION)
    if as_json:
        click.echo(json.dumps({"name": DISTRIBUTION, "version": number}))
    else:
        click.echo(f"{DISTRIBUTION} {number}")


@main.command()
def demo() -> None:
    """Run a small demo: NATS from the wheel, SQLite, three services, two order sagas."""
    from saga.demo import run_demo

    results = asyncio.run(run_demo(click.echo))
    statuses = sorted(r.status.value for r in results)
    if statuses != ["compensated", "completed"]:
        raise SystemExit(f"demo ended unexpectedly: {statuses}")


class _Unbounded:
    """``--max-in-flight-per-service unbounded``: no flow control."""


def _in_flight_limit(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> int | _Unbounded | None:
    """``--max-in-flight-per-service``: a whole number >= 1, or ``unbounded``."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("unbounded", "none"):
        return _Unbounded()
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise click.BadParameter(f"{value!r} is not a whole number >= 1 nor 'unbounded'")
    return number


@dataclass(frozen=True)
class _Flow:
    """The coordinator's flow control as the command line gave it."""

    max_in_flight: int | _Unbounded | None = None
    """A number, unbounded, or None: the coordinator's default."""
    adaptive: bool = True
    """Whether the limit adapts to the services' latency."""

    def coordinator_kwargs(self) -> dict[str, Any]:
        found: dict[str, Any] = {"adaptive_limit": self.adaptive}
        if isinstance(self.max_in_flight, _Unbounded):
            found["max_in_flight_per_service"] = None
        elif self.max_in_flight is not None:
            found["max_in_flight_per_service"] = self.max_in_flight
        return found


@dataclass(frozen=True)
class _Member:
    """How the coordinator appears among the coordinators sharing its log."""

    name: str | None = None
    lease_ms: int = DEFAULT_LEASE_MS
    api_url: str | None = None


def _coordinator_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--name``: 1 to 100 printable characters without spaces."""
    if value is None:
        return None
    if not 0 < len(value) <= 100 or not value.isprintable() or any(c.isspace() for c in value):
        raise click.BadParameter("must be 1 to 100 printable characters, without spaces")
    return value


def _advertise_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--advertise-url``: an http(s) URL, with no credentials in it."""
    if value is None:
        return None
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise click.BadParameter("must be an http:// or https:// URL")
    if parsed.username or parsed.password:
        raise click.BadParameter("must not carry a user or password")
    return value


@main.command()
@nats_option()
@db_option()
@click.option(
    "--sagas", "saga_specs", multiple=True, required=True, envvar="SAGA_SAGAS",
    show_envvar=True,
    help="module or module:attribute holding saga definitions (repeatable; "
    "space-separated in the environment variable).",
)  # fmt: skip
@click.option(
    "--max-in-flight-per-service",
    "max_in_flight",
    callback=_in_flight_limit,
    envvar="SAGA_MAX_IN_FLIGHT_PER_SERVICE",
    show_envvar=True,
    metavar="N|unbounded",
    help="Commands in flight (sent, unanswered) per service at most; the rest wait in the"
    " coordinator with their step timeouts not started (default 64; 'unbounded' sends"
    " everything at once).",
)
@click.option(
    "--adaptive-limit/--fixed-limit", default=True, show_default=True,
    help="Let the in-flight limit move between 1 and its maximum with each service's latency.",
)  # fmt: skip
@click.option(
    "--name", "name", envvar="SAGA_COORDINATOR_NAME", show_envvar=True, metavar="NAME",
    callback=_coordinator_name,
    help="A stable name for this coordinator (default <hostname>-<pid>). Restarted under the"
    " same name, it takes over at once the sagas its predecessor left.",
)  # fmt: skip
@click.option(
    "--lease", "lease_s", envvar="SAGA_LEASE", show_envvar=True, default=10.0,
    show_default=True, type=click.FloatRange(min=0.5, max=3600), metavar="SECONDS",
    help="How long this coordinator's hold on its sagas lasts unless renewed (renewed every"
    " quarter of it). With several coordinators on PostgreSQL, a dead one's sagas are taken"
    " over within about 1.25 times this.",
)  # fmt: skip
@click.option(
    "--advertise-url", "advertise_url", envvar="SAGA_ADVERTISE_URL", show_envvar=True,
    metavar="URL", callback=_advertise_url,
    help="Where this coordinator's HTTP API is reachable, as /api/coordinators shows it.",
)  # fmt: skip
@http_options
@log_format_option()
def coordinator(
    log_format: str,
    nats_url: str,
    db_url: str,
    saga_specs: tuple[str, ...],
    max_in_flight: int | _Unbounded | None,
    adaptive_limit: bool,
    name: str | None,
    lease_s: float,
    advertise_url: str | None,
    http: str | None,
    **api: Any,
) -> None:
    """Run a coordinator until SIGINT or SIGTERM (with --http, serve the API beside it)."""
    from saga.api.options import ensure_port_free, http_settings

    configure_logging(None, log_format)
    sys.path.insert(0, "")
    sagas = [s for spec in saga_specs for s in load_sagas(spec)]
    settings = http_settings(http, **api) if http else None
    if settings is not None:
        # Before connecting to anything: a busy port is one line, not a traceback at the end.
        ensure_port_free(settings.host, settings.port, "--http")
    try:
        flow = _Flow(max_in_flight, adaptive_limit)
        member = _Member(name=name, lease_ms=round(lease_s * 1000), api_url=advertise_url)
        eventloop.run(_serve(nats_url, db_url, sagas, settings, flow, member))
    except SagaError as exc:
        raise click.ClickException(str(exc)) from exc


async def _serve(
    nats_url: str,
    db_url: str,
    sagas: list[Saga],
    http: HttpSettings | None = None,
    flow: _Flow | None = None,
    member: _Member | None = None,
) -> None:
    from saga.api.options import serve_http
    from saga.coordinator import Coordinator
    from saga.log.sql import SqlSagaLog
    from saga.transport.nats import NatsTransport
    from saga.transport.security import NatsSecurity

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    servers = [url.strip() for url in nats_url.split(",") if url.strip()]
    # Credentials and TLS for NATS come from SAGA_NATS_* variables (README: Securing NATS).
    transport = NatsTransport(servers, security=NatsSecurity.from_env())
    coordinator = Coordinator(
        SqlSagaLog(db_url),
        transport,
        sagas=sagas,
        **(flow or _Flow()).coordinator_kwargs(),
        **vars(member or _Member()),
    )
    async with coordinator:
        names = ", ".join(f"{s.name} v{s.version}" for s in sagas)
        click.echo(
            f"coordinator running: nats {redact_url(nats_url)}, log {redact_url(db_url)},"
            f" sagas {names}, event loop {eventloop.name()}, id {coordinator.coordinator_id},"
            f" lease {coordinator.lease_ms / 1000:g} s"
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
@db_option()
@JSON_OPTION
def show_log(saga_id: str, db_url: str, as_json: bool) -> None:
    """Show one saga's raw event log, read straight from the database (no API needed), each
    event with its time (ISO 8601, UTC, milliseconds).

    It only reads: a missing database or an old schema is reported, never created or
    upgraded (``saga migrate`` does that). An unknown saga exits 3."""

    from saga.log.sql import SqlSagaLog

    async def read() -> None:
        log = SqlSagaLog(db_url, migrate=False)
        try:
            await log.open()
            try:
                record = await log.get(saga_id)
                if record is None:
                    raise CliFailure(
                        f"no saga {saga_id!r} in {redact_url(db_url)}",
                        exit_code=ExitCode.NOT_FOUND,
                    )
                events = await log.events(saga_id)
            finally:
                await log.close()
        except SagaError as exc:
            raise CliFailure(str(exc), exit_code=ExitCode.ERROR) from exc
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
                            {
                                "seq": e.seq,
                                "type": e.type.value,
                                "at": iso_time(e.at_ms),
                                "at_ms": e.at_ms,
                                "data": e.data,
                            }
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
            click.echo(f"  {iso_time(event.at_ms)}{describe(event)}")

    asyncio.run(read())


@main.command("migrate")
@db_option()
def migrate(db_url: str) -> None:
    """Create or upgrade the saga log's schema to this release's, then exit.

    A coordinator does the same when it starts; this does it ahead (before a deploy, or for
    ``saga log``, which never changes a database)."""

    from saga.log.sql import SqlSagaLog
    from saga.log.sql.migrate import head_revision

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

if __name__ == "__main__":
    main()
