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
    command, or None if it recorded none (e.g. the forward command's process died mid-way)."""

    @property
    def is_compensation(self) -> bool:
        return self.direction is Direction.COMPENSATE


Handler = Callable[[CommandContext, JsonObject], Awaitable[JsonObject | None]]
"""``async def handler(ctx, request) -> dict | None``; raise ``saga.errors.Rejected`` to say no."""
