"""Start sagas from users' services and scripts over NATS, through whichever coordinator answers.

    reply = await start_saga(nc, "order", {"customer": "carol"}, saga_id="order-42")

Every coordinator serves the request (``saga.start``, queue group ``saga-coordinators``); the
reply says which saga, whether this call created it, its status and its owner.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from saga.definition import Saga
from saga.protocol import JsonObject
from saga.transport.nats import connect_nats
from saga.transport.nats_start import DEFAULT_START_TIMEOUT_S, request_start
from saga.transport.security import NatsSecurity
from saga.transport.starts import StartReply, StartRequest

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["StartReply", "start_saga"]


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
