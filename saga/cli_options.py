"""The command-line options several ``saga`` commands share, each declared once.

``--nats``, ``--db`` and ``--http`` with the API options mean the same thing, and read the same
``SAGA_*`` variable, in ``saga coordinator``, ``saga dev``, ``saga soak``, ``saga log`` and
``saga migrate``; a command chooses only its default and its help line. This module imports
nothing but click, so declaring a command never imports the HTTP server, the SQL log or NATS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

NATS_URL_ENV = "SAGA_NATS_URL"
DB_URL_ENV = "SAGA_DB_URL"
HTTP_ENV = "SAGA_HTTP"

DEFAULT_NATS = "nats://127.0.0.1:4222"
"""Where the coordinator finds NATS unless ``--nats`` says otherwise."""
DEFAULT_DB = "sqlite:///saga.db"
"""The saga log unless ``--db`` says otherwise: a SQLite file in the working folder."""

NATS_HELP = "NATS server URL(s), comma-separated."
DB_HELP = "Saga log: a SQLite or PostgreSQL URL."

HTTP_PARAMS = (
    "http", "token_viewer", "token_operator", "token_signal", "token_file", "insecure", "redact",
    "stall_after", "allowed_host", "access_log",
)  # fmt: skip
"""The keyword arguments ``http_options`` adds to a command (pop them for ``http_settings``)."""


def nats_option(
    *, default: str | None = DEFAULT_NATS, help_text: str = NATS_HELP
) -> Callable[[F], F]:
    """``--nats URL`` (``SAGA_NATS_URL``), passed to the command as ``nats_url``."""
    return click.option(
        "--nats", "nats_url", default=default, show_default=default is not None,
        envvar=NATS_URL_ENV, show_envvar=True, help=help_text,
    )  # fmt: skip


def db_option(
    *, default: str | None = DEFAULT_DB, help_text: str = DB_HELP, from_env: bool = True
) -> Callable[[F], F]:
    """``--db URL`` (``SAGA_DB_URL`` unless ``from_env`` is false), passed as ``db_url``."""
    return click.option(
        "--db", "db_url", default=default, show_default=default is not None,
        envvar=DB_URL_ENV if from_env else None, show_envvar=from_env, help=help_text,
    )  # fmt: skip


def http_options(func: F) -> F:
    """Add --http and the API options; the command receives them as keyword arguments
    (the names in ``HTTP_PARAMS``; ``saga.api.options.http_settings`` checks them)."""
    options = [
        click.option(
            "--http", "http", metavar="HOST:PORT", envvar=HTTP_ENV, show_envvar=True,
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
            "--token-signal", "--signal-token", "token_signal", multiple=True,
            metavar="NAME:SECRET", envvar="SAGA_TOKEN_SIGNAL", show_envvar=True,
            help="A bearer token that may only send outside events to sagas (a webhook's).",
        ),
        click.option(
            "--token-file", "token_file", metavar="PATH", envvar="SAGA_TOKEN_FILE",
            show_envvar=True,
            help="Read tokens from this file, one ROLE:NAME:SECRET a line (ROLE viewer, "
            "operator or signal; # comments). Unlike --token-*, not visible in ps.",
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
