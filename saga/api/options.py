"""Command-line options for serving the API (``--http``, tokens, allowed hosts, ``--insecure``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from saga.api.config import ANY_HOST, ApiConfig, tokens_from_file, tokens_from_specs
from saga.api.guard import LOOPBACK_HOSTS
from saga.api.server import HttpServer, check_exposure, is_loopback, start_http
from saga.coordinator import Coordinator

F = TypeVar("F", bound=Callable[..., Any])

HTTP_PARAMS = (
    "http", "token_viewer", "token_operator", "token_file", "insecure", "redact",
    "stall_after", "allowed_host", "access_log",
)  # fmt: skip
"""The keyword arguments ``http_options`` adds to a command (pop them for ``http_settings``)."""


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """Where and how to serve the API, checked: start() it beside an open coordinator."""

    host: str
    port: int
    config: ApiConfig
    insecure: bool = False

    async def start(
        self, coordinator: Coordinator, echo: Callable[[str], Any] = click.echo
    ) -> HttpServer:
        """Serve, and say where (and, without tokens, that anyone reaching it may act)."""
        server = await start_http(
            coordinator, host=self.host, port=self.port, config=self.config,
            insecure=self.insecure,
        )  # fmt: skip
        echo(f"HTTP API and dashboard on {server.url}/ (OpenAPI: {server.url}/openapi.json)")
        if not self.config.auth:
            echo(f"no API tokens configured: anyone who can reach {server.url} may act on sagas")
        if not is_loopback(self.host) or self.config.allowed_hosts:
            echo(f"answering to Host names: {describe_hosts(server.config)}")
        return server


def describe_hosts(config: ApiConfig) -> str:
    """The Host names ``config`` serves, for a start-up line."""
    if ANY_HOST in config.allowed_hosts:
        return "any (--allowed-host '*')"
    names = sorted(LOOPBACK_HOSTS | config.allowed_hosts)
    if config.allow_ip_hosts:
        names.append("any IP address")
    return ", ".join(names) + " (more with --allowed-host NAME)"


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (loopback) or ``[v6]:PORT``; click.BadParameter otherwise."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="--http")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def http_settings(
    http: str,
    *,
    token_viewer: tuple[str, ...] = (),
    token_operator: tuple[str, ...] = (),
    token_file: str | None = None,
    insecure: bool = False,
    redact: tuple[str, ...] = (),
    stall_after: float = 900.0,
    allowed_host: tuple[str, ...] = (),
    access_log: bool = False,
) -> HttpSettings:
    """Settings from the options below; click.UsageError for unsafe or invalid ones."""
    host, port = parse_address(http)
    try:
        tokens = tokens_from_specs(viewers=token_viewer, operators=token_operator)
        if token_file:
            tokens += tokens_from_file(Path(token_file))
        config = ApiConfig(
            tokens=tokens,
            redact=frozenset(redact),
            stall_after=timedelta(seconds=stall_after) if stall_after > 0 else None,
            allowed_hosts=frozenset(allowed_host),
            access_log=access_log,
        )
        check_exposure(host, config, insecure=insecure)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    return HttpSettings(host=host, port=port, config=config, insecure=insecure)


def http_options(func: F) -> F:
    """Add --http and the API options; the command receives them as keyword arguments
    (the names in ``HTTP_PARAMS``)."""
    options = [
        click.option(
            "--http", "http", metavar="HOST:PORT", envvar="SAGA_HTTP", show_envvar=True,
            help="Serve the HTTP API, metrics and dashboard here.",
        ),
        click.option(
            "--token-viewer", "token_viewer", multiple=True, metavar="NAME:SECRET",
            envvar="SAGA_TOKEN_VIEWER", show_envvar=True,
            help="A bearer token that may read (repeatable; space-separated in the env).",
        ),
        click.option(
            "--token-operator", "token_operator", multiple=True, metavar="NAME:SECRET",
            envvar="SAGA_TOKEN_OPERATOR", show_envvar=True,
            help="A bearer token that may also start sagas and act on them.",
        ),
        click.option(
            "--token-file", "token_file", metavar="PATH", envvar="SAGA_TOKEN_FILE",
            show_envvar=True,
            help="Read tokens from this file, one ROLE:NAME:SECRET a line (ROLE viewer or "
            "operator; # comments). Unlike --token-*, not visible in ps.",
        ),
        click.option(
            "--insecure", is_flag=True,
            help="Allow serving a non-loopback address without tokens.",
        ),
        click.option(
            "--redact", multiple=True, metavar="FIELD", envvar="SAGA_REDACT", show_envvar=True,
            help="Hide this payload field (any depth) in API responses (repeatable).",
        ),
        click.option(
            "--stall-after", type=float, default=900.0, show_default=True, metavar="SECONDS",
            envvar="SAGA_STALL_AFTER", show_envvar=True,
            help="An unfinished saga without progress this long shows as stuck (0: never).",
        ),
        click.option(
            "--allowed-host", "allowed_host", multiple=True, metavar="NAME",
            envvar="SAGA_ALLOWED_HOST", show_envvar=True,
            help="Also answer requests for this Host name (repeatable; '*': any). Loopback "
            "names and the --http address are always served.",
        ),
        click.option(
            "--access-log", "access_log", is_flag=True, envvar="SAGA_ACCESS_LOG",
            show_envvar=True, help="Log every HTTP request (refused ones are always logged).",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func
