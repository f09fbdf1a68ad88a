"""The first NATS connect is tried again a bounded number of times (tenacity)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from saga.errors import TransportError
from saga.transport.nats import INITIAL_CONNECT_ATTEMPTS, connect_nats
from saga.transport.nats_server import NatsServer

pytestmark = pytest.mark.nats


class _Seen(logging.Handler):
    """Sets an event when a record whose message contains ``fragment`` is logged."""

    def __init__(self, fragment: str) -> None:
        super().__init__(logging.WARNING)
        self.fragment = fragment
        self.event = asyncio.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.fragment in record.getMessage():
            self.count += 1
            self.event.set()


async def test_first_connect_waits_for_a_server_that_starts_late() -> None:
    server = NatsServer(jetstream=False)  # its port is chosen, nobody listens yet
    seen = _Seen("cannot connect to NATS")
    logger = logging.getLogger("saga.transport.nats")
    logger.addHandler(seen)
    try:
        connecting = asyncio.create_task(
            connect_nats(server.url, name="late", options={"reconnect_time_wait": 2})
        )
        # The first try failed and a retry is scheduled: only now does the server start.
        await asyncio.wait_for(seen.event.wait(), 60)
        await server.start()
        nc = await asyncio.wait_for(connecting, 60)
        try:
            assert nc.is_connected
        finally:
            await nc.close()
    finally:
        logger.removeHandler(seen)
        await server.stop()


async def test_first_connect_gives_up_after_a_bounded_number_of_tries() -> None:
    down = NatsServer(jetstream=False)
    seen = _Seen("cannot connect to NATS")
    logger = logging.getLogger("saga.transport.nats")
    logger.addHandler(seen)
    try:
        with pytest.raises(TransportError, match="cannot connect to NATS"):
            await connect_nats(down.url, name="down", options={"reconnect_time_wait": 0.1})
    finally:
        logger.removeHandler(seen)
        await down.stop()
    assert seen.count == INITIAL_CONNECT_ATTEMPTS - 1  # one warning per retry
