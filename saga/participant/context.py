"""CommandContext and the handler signature: what a participant's handler is given and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from saga.errors import StateError
from saga.protocol import Direction

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A handler's answer "taken; I will finish it later": made by ``ctx.accept()``.

    The command is recorded as accepted and answered ``accepted`` with ``token``; complete it
    later with ``participant.complete(token, result)`` (or ``reject``, ``fail``), from this
    process or any other sharing the store.
    """

    token: str
    """The completion token: the command's idempotency key (``<saga id>/<step>/forward``)."""


@dataclass(frozen=True, kw_only=True)
class CommandContext:
    """Which saga, step, direction and attempt a handler call serves."""

    saga_id: str
    saga_name: str
    step: str
    direction: Direction
    attempt: int
    idempotency_key: str
    service: str
    command: str
    forward_result: JsonObject | None = None
    """For a compensation: the result this participant recorded for the step's forward
    command, or None if it recorded none (the forward attempt failed, its process died
    mid-way, or it returned an unusable result). A compensation handler runs whenever a
    forward attempt reached this service, even one that failed: it must treat "nothing to
    undo" as success."""
    connection: Any = None
    """For a command registered with ``transactional=True``: the open transaction (an
    SQLAlchemy ``AsyncConnection`` for ``SqlIdempotencyStore``) to write the effect on. It
    commits together with the idempotency record when the handler returns, and rolls back
    when the handler raises. Do not commit or roll it back yourself. None otherwise."""

    @property
    def is_compensation(self) -> bool:
        return self.direction is Direction.COMPENSATE

    @property
    def token(self) -> str:
        """The completion token this command gets if its handler accepts it."""
        return self.idempotency_key

    def accept(self) -> Accepted:
        """``return ctx.accept()``: answer now that the command is taken, and finish it later.

        Hand ``ctx.token`` to the job that does the work; it completes the command with
        ``participant.complete(token, result)`` (or ``reject``, ``fail``, ``heartbeat``).
        Until then every repeat of the command answers ``accepted``, without running the
        handler. A forward command only: a compensation must answer at once (StateError).
        """
        if self.is_compensation:
            raise StateError(
                f"the compensation of step {self.step!r} cannot be accepted to finish later;"
                " a compensation answers at once",
                saga_id=self.saga_id,
                step=self.step,
                attempt=self.attempt,
            )
        return Accepted(token=self.idempotency_key)


Handler = Callable[[CommandContext, JsonObject], Awaitable[JsonObject | Accepted | None]]
"""``async def handler(ctx, request) -> dict | None``; raise ``saga.errors.Rejected`` to say no,
``return ctx.accept()`` to finish the command later."""
