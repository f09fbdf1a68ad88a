"""POST /api/sagas/{saga}/events/{event}: deliver an outside event to a saga's wait step.

The operator and signal roles may send events (a signal token may do nothing else: it cannot
even read sagas). The body is ``{"id": "...", "payload": {...}}``; the answer and the
refusals are those of NATS ``saga.event`` (``saga.transport.signals``), as HTTP statuses.
"""

from __future__ import annotations

from aiohttp import web

from saga.api import models, params
from saga.api.context import context, identity
from saga.api.problems import ApiError
from saga.coordinator.signals import answer_signal, refused
from saga.errors import ProtocolError
from saga.protocol import decode_json_object
from saga.transport.signals import (
    CONFLICT,
    INVALID,
    NOT_AWAITED,
    NOT_FOUND,
    TOO_LARGE,
    UNAVAILABLE,
    SignalRefusal,
    SignalRequest,
)

API_SENDER = "api"
"""The sender recorded for an event sent over HTTP with authentication off."""
BODY_FIELDS = ("id", "payload")

STATUSES = {
    INVALID: 400,
    NOT_FOUND: 404,
    CONFLICT: 409,
    TOO_LARGE: 413,
    NOT_AWAITED: 422,
    UNAVAILABLE: 503,
}
"""The HTTP status of each refusal code; any other code is a 500."""


async def send_event(request: web.Request) -> web.Response:
    """POST /api/sagas/{saga}/events/{event}: 201 when the event is recorded now, 200 for a
    repeat of an id the saga had received (nothing changed)."""
    ctx = context(request)
    token = identity(request)
    sender = API_SENDER if token is None else token.name
    saga_id, event = request.match_info["saga"], request.match_info["event"]
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.client_max_size
        answer: SignalRefusal = refused(
            SignalRefusal(code=TOO_LARGE, message=f"the body is over the {limit} byte limit"),
            sender=sender,
            event=event,
        )
        raise _error(answer) from exc
    try:
        body = decode_json_object(raw, "event", request.client_max_size)
        unknown = sorted(key for key in body if key not in BODY_FIELDS)
        if unknown:
            shown = ", ".join(repr(key[:40]) for key in unknown[:5])
            raise ProtocolError(f"unknown fields {shown}; the body takes id and payload")
        signal = SignalRequest.from_json({**body, "saga_id": saga_id, "event": event})
        # The protocol's checks first (their messages are those NATS senders get), then the
        # contract's model, so nothing outside /openapi.json's EventRequest is taken.
        params.query(models.EventPath, request.match_info)
        params.decode(models.EventRequest, raw)
    except ApiError as exc:
        problem = SignalRefusal(code=INVALID, message=exc.message)
        raise _error(refused(problem, sender=sender, event=event)) from exc
    except ProtocolError as exc:
        # A bad id, event name or body is the sender's malformed request: 400 (the body's
        # size is limited above, by aiohttp; the payload's by the coordinator).
        problem = SignalRefusal(code=INVALID, message=exc.message)
        raise _error(refused(problem, sender=sender, event=event)) from exc
    reply = await answer_signal(ctx.coordinator, signal, sender=sender)
    if isinstance(reply, SignalRefusal):
        raise _error(reply)
    return web.json_response(reply.to_json(), status=201 if reply.recorded else 200)


def _error(refusal: SignalRefusal) -> ApiError:
    return ApiError(STATUSES.get(refusal.code, 500), refusal.message)
