"""CommandContext and the handler signature: what a participant's handler is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from saga.protocol import Direction

JsonObject = dict[str, Any]


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


Handler = Callable[[CommandContext, JsonObject], Awaitable[JsonObject | None]]
"""``async def handler(ctx, request) -> dict | None``; raise ``saga.errors.Rejected`` to say no."""
