"""Outside events that arrive over the transport (NATS ``saga.event``) or HTTP, answered with
Coordinator.signal.

The same checks and the same idempotency whichever way an event comes: a repeated event id
finds the event in the shared log, whichever coordinator answered first. Every refusal is an
answer (see ``saga.transport.signals`` for the codes), logged in one line naming the sender,
never an exception; a refused event writes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from saga.errors import ProtocolError, SagaError
from saga.protocol import JsonObject, encode_json
from saga.transport.base import SignalHandler
from saga.transport.signals import (
    INTERNAL,
    NOT_AWAITED,
    NOT_FOUND,
    TOO_LARGE,
    SignalAnswer,
    SignalRefusal,
    SignalReply,
    SignalRequest,
)

if TYPE_CHECKING:
    from saga.coordinator.coordinator import Coordinator

logger = logging.getLogger(__name__)

NATS_SENDER = "nats"
"""The sender recorded for an event that came over NATS (the request names nobody)."""


def refused(refusal: SignalRefusal, *, sender: str, event: str | None = None) -> SignalRefusal:
    """Log ``refusal`` in one line (who sent what, and why; never the payload); return it."""
    saga_id = refusal.details.get("saga_id")
    what = f"event {event!r}" if event else "an event"
    where = f" for saga {saga_id!r}" if isinstance(saga_id, str) else ""
    logger.info("refused %s%s from %s (%s): %s", what, where, sender, refusal.code, refusal.message)
    return refusal


async def answer_signal(
    coordinator: Coordinator, request: SignalRequest, *, sender: str
) -> SignalAnswer:
    """Deliver ``request`` to its saga with ``coordinator.signal``; never raises.

    Refusals, in this order: ``not_found`` (no such saga), ``not_awaited`` (no step of the
    saga's definition waits for that event), ``too_large`` (the payload is over the
    coordinator's ``max_input_bytes``), then what ``signal`` raises: ``invalid``,
    ``conflict`` (the saga is finished, or its wait step took another event),
    ``unavailable`` (the log is down).
    """
    saga_id, event = request.saga_id, request.event
    details: JsonObject = {"saga_id": saga_id}
    try:
        record = await coordinator.log.get(saga_id)
        if record is None:
            refusal = SignalRefusal(code=NOT_FOUND, message=f"no saga {saga_id!r}", details=details)
            return refused(refusal, sender=sender, event=event)
        defn = coordinator.registry.get(record.name, record.version)
        if defn is not None and not defn.waits_for(event):
            # Known from the definition alone: a sender's mistake (a typo, the wrong saga),
            # not a race with the saga's progress, so it is told apart from a conflict.
            waited = ", ".join(repr(name) for name in defn.events) or "none"
            refusal = SignalRefusal(
                code=NOT_AWAITED,
                message=f"no step of saga {saga_id!r} ({record.name} v{record.version}) waits"
                f" for the event {event!r}; it waits for: {waited}",
                details=details,
            )
            return refused(refusal, sender=sender, event=event)
        limit = coordinator.max_input_bytes
        try:
            encode_json(request.payload, limit)
        except ProtocolError as exc:
            if "byte limit" not in exc.message:
                raise ProtocolError(exc.message, saga_id=saga_id) from exc
            size = len(encode_json(request.payload, 2**62))
            refusal = SignalRefusal(
                code=TOO_LARGE,
                message=f"the event's payload is {size} bytes, over the {limit} byte limit",
                details={**details, "size_bytes": size, "limit_bytes": limit},
            )
            return refused(refusal, sender=sender, event=event)
        result = await coordinator.signal(
            saga_id, event, event_id=request.id, payload=request.payload, sender=sender
        )
    except SagaError as exc:
        refusal = SignalRefusal.of(exc)
        if "saga_id" not in refusal.details:
            refusal = SignalRefusal(
                code=refusal.code, message=refusal.message, details={**refusal.details, **details}
            )
        return refused(refusal, sender=sender, event=event)
    except Exception:  # never let a bug end the transport's loop or become a bare 500
        logger.exception("answering the event %r for saga %r failed", event, saga_id)
        refusal = SignalRefusal(
            code=INTERNAL,
            message="the coordinator failed to answer the event (see its log)",
            details=details,
        )
        return refusal
    return SignalReply(
        saga_id=saga_id,
        event=event,
        id=request.id,
        recorded=result.recorded,
        step=result.step,
        status=result.status.value,
    )


def signal_handler(coordinator: Coordinator, *, sender: str = NATS_SENDER) -> SignalHandler:
    """The handler a coordinator gives its transport's ``serve_signals``."""

    async def answer(request: SignalRequest) -> SignalAnswer:
        return await answer_signal(coordinator, request, sender=sender)

    return answer
