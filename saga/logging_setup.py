"""Log records in a saga's context: who sets it, how lines carry it, text or JSON lines.

The coordinator (and the participant SDK) wrap the work on one step attempt in
``saga_context(...)``; ``SagaContextFilter`` copies ``saga_id``, ``step``, ``direction`` and
``attempt`` onto every record logged inside it. ``JsonFormatter`` writes one JSON object a line
(time, level, logger, message, those fields when set, and an exception's traceback).
``configure(level, fmt)`` installs either format on the root logger. Operator actions are
also written to the ``saga.audit`` logger (``audit``).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(saga_suffix)s"
SAGA_FIELDS = ("saga_id", "step", "direction", "attempt")

AUDIT = logging.getLogger("saga.audit")

_fields: ContextVar[tuple[str, str | None, str | None, int | None] | None] = ContextVar(
    "saga_log_fields", default=None
)
"""(saga id, step, direction, attempt) of the work under way: one variable, set once."""

# The standard LogRecord attributes: anything else on a record came from ``extra``.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "saga_suffix", *SAGA_FIELDS}
)


class saga_context:  # noqa: N801  (used as a function: ``with saga_context(...)``)
    """Every record logged inside (in this task, and in tasks it starts) carries these
    fields. A class, not a generator: it wraps every command the coordinator sends."""

    __slots__ = ("_token", "_value")

    def __init__(
        self, saga_id: str, step: str | None = None, direction: str | None = None,
        attempt: int | None = None,
    ) -> None:  # fmt: skip
        self._value = (saga_id, step, direction, attempt)
        self._token: Token[tuple[str, str | None, str | None, int | None] | None] | None = None

    def __enter__(self) -> None:
        self._token = _fields.set(self._value)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _fields.reset(self._token)
            self._token = None


def current() -> dict[str, str | int]:
    """The saga fields set now (none outside a saga's context)."""
    value = _fields.get()
    if value is None:
        return {}
    return {k: v for k, v in zip(SAGA_FIELDS, value, strict=True) if v is not None}


class SagaContextFilter(logging.Filter):
    """Copies the saga fields of the current context onto each record (a handler filter:
    it sees records of every logger). Fields given with ``extra`` win."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current()
        for name in SAGA_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        shown = [f"{name}={getattr(record, name)}" for name in SAGA_FIELDS
                 if getattr(record, name) is not None]  # fmt: skip
        record.saga_suffix = f" [{' '.join(shown)}]" if shown else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the saga
    fields when set, any ``extra`` fields, and ``exc_info`` as text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in SAGA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for name, value in vars(record).items():
            if name not in _RESERVED and not name.startswith("_"):
                line[name] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def make_handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing ``fmt`` (``text`` or ``json``) lines."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(SagaContextFilter())
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    return handler


def configure(level: int | None, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) in ``fmt`` at ``level`` (None: keep the root's level).

    Replaces the root's plain stream handlers (``logging.basicConfig``'s, or an earlier
    call's); others (a file, a test's capture) stay. ``saga.audit`` logs at INFO at least.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(make_handler(fmt, stream))
    if level is not None:
        root.setLevel(level)
    if AUDIT.getEffectiveLevel() > logging.INFO:
        AUDIT.setLevel(logging.INFO)  # operator actions are rare, and always worth a line


def audit(
    action: str, saga_id: str, *, actor: str, reason: str, dry_run: bool = False,
    outcome: str = "done",
) -> None:  # fmt: skip
    """One ``saga.audit`` line for an operator action (the log's own audit entry is the
    record; this is for the people reading the application's logs)."""
    if dry_run:
        return
    AUDIT.info(
        "operator %s: %s on saga %s (%s): %s", actor, action, saga_id, outcome, reason,
        extra={"action": action, "actor": actor, "reason": reason, "outcome": outcome,
               "saga_id": saga_id},
    )  # fmt: skip
