"""The whole error tree of saga-coordinator.

    SagaError                      root: everything the library raises on purpose
    ├── DefinitionError            a saga definition is invalid (raised when it is declared)
    ├── ConfigError                a setting is invalid: an option, variable or file (a ValueError)
    ├── ProtocolError              a wire message is malformed, missing headers, or too large
    │   └── InvalidStartError      a saga start's id, input or version is refused
    ├── UnknownSagaError           no registered definition for a name (and version)
    ├── SagaNotFoundError          no saga with that id in the log
    ├── QueryError                 a saga log query is invalid (limit, cursor, time range, filter)
    ├── StateError                 an action that does not fit the saga's current state
    │   └── SagaConflictError      a used saga id started again with another name or input
    ├── LogError                   the saga log failed (driver errors are wrapped here)
    │   └── ConcurrencyError       another writer appended to the same saga (sequence clash)
    │       └── FencedError        the saga was taken over: this coordinator's epoch is stale
    ├── TransportError             the transport could not send (broker down, closed)
    ├── IdempotencyStoreError      a participant's idempotency store failed or is misconfigured
    ├── CompletionRefused          a long-running command's completion: compensated, unknown
    │                              token, or already completed with another outcome
    └── StepError                  raised by participant handlers
        ├── Rejected               a business "no": the step had no effect; never retried
        └── (any other exception)  transient: the outcome is unknown and the step is retried

Errors carry structured fields (saga id, step, attempt) rather than only a message.
"""

from __future__ import annotations

from typing import Any


class SagaError(Exception):
    """Root of every error raised on purpose by saga-coordinator."""

    def __init__(
        self,
        message: str,
        *,
        saga_id: str | None = None,
        step: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.saga_id = saga_id
        self.step = step
        self.attempt = attempt


class DefinitionError(SagaError):
    """A saga definition is invalid; raised when the saga is declared or registered."""


class ConfigError(SagaError, ValueError):
    """A configuration value is invalid: an option, an environment variable, a file's content.

    Also a ValueError, so code that validated settings with ``except ValueError`` still works.
    """


class ProtocolError(SagaError):
    """A message on the wire is malformed, misses a header, or exceeds the size limit."""


class InvalidStartError(ProtocolError):
    """``Coordinator.start`` refused its arguments before anything was recorded.

    ``argument`` names the one at fault (``"saga_id"``, ``"input"`` or ``"version"``);
    for an input over the coordinator's limit, ``size_bytes`` and ``limit_bytes`` say by how
    much. The HTTP API maps these fields to 400, 413 and 422 without parsing the message.
    """

    def __init__(
        self,
        message: str,
        *,
        argument: str,
        saga_id: str | None = None,
        size_bytes: int | None = None,
        limit_bytes: int | None = None,
    ) -> None:
        super().__init__(message, saga_id=saga_id)
        self.argument = argument
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class UnknownSagaError(SagaError):
    """No definition is registered under that saga name (and version)."""


class SagaNotFoundError(SagaError):
    """No saga with that id exists in the log."""


class QueryError(SagaError):
    """A ``SagaQuery`` is invalid: a limit out of range, a cursor this log did not make, a
    time range with ends that are not int milliseconds, or an unknown status or health.

    Raised where the query is built, before any log is asked, so an HTTP handler can answer
    400 with the message; the parsing error, if any, is the ``__cause__``.
    """


class StateError(SagaError):
    """The requested action does not fit the saga's current state."""


class SagaConflictError(StateError):
    """A saga id that exists already was started with another saga name, version or input.

    ``differences`` names what differs (``"name"``, ``"version"``, ``"input"``). Starting the
    same id with the same name and input is idempotent; anything else is a caller's bug (two
    orders sharing an id), never silently answered with the old saga.
    """

    def __init__(self, message: str, *, saga_id: str, differences: tuple[str, ...]) -> None:
        super().__init__(message, saga_id=saga_id)
        self.differences = differences


class LogError(SagaError):
    """The saga log failed; the driver's error is the ``__cause__``."""


class ConcurrencyError(LogError):
    """Another writer appended to the same saga: the expected sequence number was taken."""


class FencedError(ConcurrencyError):
    """A write carried an epoch the saga has moved past: another coordinator took it over
    (its owner's lease expired, or an operator acted on it elsewhere). Nothing was written;
    the writer must let the saga go, never reload and retry it."""


class TransportError(SagaError):
    """The transport could not send a message (broker unreachable, connection closed)."""


class IdempotencyStoreError(SagaError):
    """A participant's idempotency store failed (its driver's error is the ``__cause__``), or
    was given an unsupported database URL. The participant answers ``store_error`` and the
    command is retried: no effect is recorded as done without its record."""


class CompletionRefused(SagaError):  # noqa: N818 - a refusal, as Rejected is a "no"
    """A participant refused to complete (or heartbeat) a long-running command; nothing changed.

    ``token`` is the completion token. ``compensated`` is True when the step's compensation
    closed the command first: the saga is undoing the step, so stop the work (the
    compensation handler ran, or runs, with ``forward_result`` None). Otherwise the token is
    unknown to the service's store (``recorded`` None), or the command was completed already
    with another outcome (``recorded``: that reply, as its JSON).
    """

    def __init__(
        self,
        message: str,
        *,
        token: str,
        compensated: bool = False,
        recorded: dict[str, Any] | None = None,
        saga_id: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message, saga_id=saga_id, step=step)
        self.token = token
        self.compensated = compensated
        self.recorded = recorded


class StepError(SagaError):
    """Base for errors a participant handler raises to shape its reply."""


class Rejected(StepError):  # noqa: N818 - a business answer, not a failure
    """A business "no" from a participant (insufficient credit, out of stock).

    The step had no effect, so it is never retried and never compensated; the coordinator
    compensates the steps before it. ``code`` is a short machine-readable reason and
    ``details`` any JSON-serialisable context for operators.
    """

    def __init__(
        self, message: str, *, code: str = "rejected", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}
