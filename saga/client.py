"""Start sagas and send them outside events from users' services and scripts over NATS,
through whichever coordinator answers.

    reply = await start_saga(nc, "order", {"customer": "carol"}, saga_id="order-42")
    taken = await send_event(nc, "order-42", "manager_approved", event_id="mail-7",
                             payload={"by": "dana"})

Every coordinator serves both requests (``saga.start`` and ``saga.event``, queue group
``saga-coordinators``); a start's reply says which saga, whether this call created it, its
status and its owner; an event's, whether this call recorded it and which wait step took it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from saga.definition import Saga
from saga.protocol import JsonObject
from saga.transport.nats import connect_nats
from saga.transport.nats_signal import DEFAULT_EVENT_TIMEOUT_S, request_signal
from saga.transport.nats_start import DEFAULT_START_TIMEOUT_S, request_start
from saga.transport.security import NatsSecurity
from saga.transport.signals import SignalReply, SignalRequest
from saga.transport.starts import StartReply, StartRequest

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["SignalReply", "StartReply", "send_event", "start_saga"]


async def start_saga(
    nc_or_urls: Client | str | Sequence[str],
    saga: Saga | str,
    input: JsonObject | None = None,
    *,
    saga_id: str | None = None,
    version: int | None = None,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    security: NatsSecurity | None = None,
) -> StartReply:
    """Start ``saga`` (a name, or a Saga: its name and version) with ``input`` over NATS.

    ``nc_or_urls`` is a connected nats-py client, or NATS URLs (one, comma-separated, or a
    list) to connect to for this one call, with ``security``. Without ``saga_id`` a random one
    is chosen here, so that a start whose answer was lost can be repeated with the id the
    TransportError carries. Repeating a start with the same id and input answers
    ``created=False`` with the same saga, from any coordinator.

    Raises the errors ``Coordinator.start`` raises: InvalidStartError (bad id, input or
    version, oversize input; nothing written), UnknownSagaError, SagaConflictError (the id is
    used by another saga or input; ``differences`` names what); LogError when the
    coordinator's log is unavailable; TransportError when no coordinator serves starts or
    none answers within ``timeout_s`` seconds (then the saga may have started).
    """
    if isinstance(saga, Saga):
        name, version = saga.name, saga.version if version is None else version
    else:
        name = saga
    request = StartRequest(
        saga=name, input=input, saga_id=uuid.uuid4().hex if saga_id is None else saga_id,
        version=version,
    )  # fmt: skip
    if not isinstance(nc_or_urls, str | Sequence):
        return await request_start(nc_or_urls, request, timeout_s)
    nc = await connect_nats(nc_or_urls, name="saga-client", security=security)
    try:
        return await request_start(nc, request, timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def send_event(
    nc_or_urls: Client | str | Sequence[str],
    saga_id: str,
    event: str,
    *,
    event_id: str,
    payload: JsonObject | None = None,
    timeout_s: float = DEFAULT_EVENT_TIMEOUT_S,
    security: NatsSecurity | None = None,
) -> SignalReply:
    """Send the outside event ``event`` (a ``Wait`` step's event name) to saga ``saga_id``
    over NATS, with ``payload`` (``{}`` when None) for the wait step's result.

    ``nc_or_urls`` is a connected nats-py client, or NATS URLs to connect to for this one
    call, with ``security``. ``event_id`` is the sender's id for this event (the saga id
    grammar: a webhook's delivery id, say): repeating the call with the same id answers
    ``recorded=False`` and changes nothing, so a call whose answer was lost can be repeated.
    The reply's ``step`` is the wait step the event completed, or None when the saga keeps
    it for a step it has not reached yet. The coordinator records the sender as "nats".

    Raises ProtocolError (a bad saga id, event name or event id, a payload that is not a
    JSON object or is too large; nothing written), SagaNotFoundError (no such saga),
    StateError (no step of the saga waits for ``event``, the saga is finished, or its wait
    step took another event), LogError when the coordinator's log is unavailable, and
    TransportError when no coordinator serves events or none answers within ``timeout_s``
    seconds (then the event may have been recorded: repeat it with the same id).
    """
    request = SignalRequest.from_json(
        {"saga_id": saga_id, "event": event, "id": event_id,
         "payload": {} if payload is None else payload}
    )  # fmt: skip
    if not isinstance(nc_or_urls, str | Sequence):
        return await request_signal(nc_or_urls, request, timeout_s)
    nc = await connect_nats(nc_or_urls, name="saga-client", security=security)
    try:
        return await request_signal(nc, request, timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
