"""Starts that arrive over the transport (NATS ``saga.start``), answered with Coordinator.start.

The same start, the same checks and the same idempotency as from Python or HTTP: a repeated
saga id finds the saga in the shared log, whichever coordinator answered first. Every refusal
is an answer, never an exception (see ``saga.transport.starts`` for the codes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saga.errors import SagaError
from saga.transport.base import StartHandler
from saga.transport.starts import (
    UNAVAILABLE,
    StartAnswer,
    StartRefusal,
    StartReply,
    StartRequest,
)

if TYPE_CHECKING:
    from saga.coordinator.coordinator import Coordinator


def start_handler(coordinator: Coordinator) -> StartHandler:
    """The handler a coordinator gives its transport's ``serve_starts``."""

    async def answer(request: StartRequest) -> StartAnswer:
        try:
            handle = await coordinator.start(
                request.saga, request.input, saga_id=request.saga_id, version=request.version
            )
            record = await coordinator.log.get(handle.saga_id)
        except SagaError as exc:
            return StartRefusal.of(exc)
        if record is None:  # written a moment ago; only a log reset could lose it
            return StartRefusal(
                code=UNAVAILABLE,
                message=f"saga {handle.saga_id!r} was started but cannot be read back",
                details={"saga_id": handle.saga_id},
            )
        return StartReply(
            saga_id=record.saga_id,
            created=handle.created,
            name=record.name,
            version=record.version,
            status=record.status.value,
            owner=record.owner,
        )

    return answer
