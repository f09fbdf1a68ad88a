"""Serving the API from a command: ``--http`` and its options checked, a busy port in one line.

The options themselves are declared in ``saga.cli_options`` (which imports only click, so the
``saga`` command can show its help without the HTTP server); they are re-exported here.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from saga.api.config import ANY_HOST, ApiConfig, tokens_from_file, tokens_from_specs
from saga.api.guard import LOOPBACK_HOSTS
from saga.api.server import HttpServer, check_exposure, is_loopback, start_http
from saga.cli_options import HTTP_PARAMS, http_options
from saga.coordinator import Coordinator
from saga.errors import ConfigError

__all__ = [
    "HTTP_PARAMS",
    "HttpSettings",
    "describe_hosts",
    "ensure_port_free",
    "http_options",
    "http_settings",
    "parse_address",
    "serve_http",
]


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
    token_signal: tuple[str, ...] = (),
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
        tokens = tokens_from_specs(
            viewers=token_viewer, operators=token_operator, signals=token_signal
        )
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
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    return HttpSettings(host=host, port=port, config=config, insecure=insecure)


def ensure_port_free(host: str, port: int, option: str) -> None:
    """ClickException, one line naming ``option``, if nothing could listen on ``host:port``.

    Called before anything is started, so a busy port costs no NATS or service start-up.
    """
    if port == 0:
        return
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(
            f"cannot serve on {where}: {exc.strerror}; give another address with {option}"
        ) from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As aiohttp binds (reuse_address on Unix), so a port in TIME_WAIT is not "busy".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise click.ClickException(_port_problem(where, exc, option)) from None


def _port_problem(where: str, exc: OSError, option: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is already in use by another program: give another port with {option}"
    return f"cannot serve on {where}: {exc.strerror or exc}; give another address with {option}"


async def serve_http(
    settings: HttpSettings, coordinator: Coordinator, echo: Callable[[str], Any]
) -> HttpServer:
    """Start the HTTP API; a port taken since ``ensure_port_free`` is one line too."""
    try:
        return await settings.start(coordinator, echo)
    except OSError as exc:
        raise click.ClickException(
            _port_problem(f"{settings.host}:{settings.port}", exc, "--http")
        ) from None
