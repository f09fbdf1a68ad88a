"""``--log-format text|json`` for the commands that run a coordinator, and its wiring."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from saga.logging_setup import LOG_FORMATS, configure, make_handler
from saga.redact import RedactingFilter, install_log_redaction

F = TypeVar("F", bound=Callable[..., Any])


def log_format_option() -> Callable[[F], F]:
    """The ``--log-format`` option (``SAGA_LOG_FORMAT``), passed as ``log_format``."""
    return click.option(
        "--log-format",
        "log_format",
        type=click.Choice(LOG_FORMATS),
        default="text",
        show_default=True,
        envvar="SAGA_LOG_FORMAT",
        show_envvar=True,
        help="How log lines look: text, or one JSON object a line (time, level, logger,"
        " message, and saga_id, step, direction, attempt inside a saga's work).",
    )


def configure_logging(level: int | None, fmt: str) -> None:
    """Log to stderr in ``fmt`` at ``level`` (None: the level already set, as ``-v`` set
    it), with saga fields on each line and secrets redacted (see ``logging_setup.configure``)."""
    configure(level, fmt)
    install_log_redaction()


def log_file_handler(path: Path, fmt: str) -> logging.Handler:
    """A handler writing ``fmt`` lines to the file ``path`` (``saga dev``'s coordinator
    log), with saga fields and secrets redacted."""
    handler = logging.FileHandler(path)
    stream_handler = make_handler(fmt)
    handler.setFormatter(stream_handler.formatter)
    for log_filter in stream_handler.filters:
        handler.addFilter(log_filter)
    handler.addFilter(RedactingFilter())
    return handler
