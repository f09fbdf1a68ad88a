"""Garbage on a real NATS while sagas run: nothing crashes, every saga ends, the garbage is counted.

A rogue client sees every command (a plain subscription beside the services' queue group),
answers each with malformed replies and stray ones, and throws malformed commands at the
services; another stands in for a service and answers only garbage until the real one comes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from saga import Coordinator, RetryPolicy, Saga, SagaStatus, SqlSagaLog, Step
from saga.events import EventType
from saga.protocol import Command, Direction, Reply
from saga.transport.nats import NatsTransport, flush_pending
from saga.transport.nats_server import NatsServer
from tests.integration.crash_sagas import ORDER
from tests.integration.services import CountingServices
from tests.transport.replies import wait_until

pytestmark = pytest.mark.nats

TIMEOUT_S = 30.0
REPLY_LIMIT = 16 * 1024
"""The coordinator's max_payload_bytes in these tests: the oversize reply exceeds it."""

GARBAGE_REPLIES: list[tuple[dict[str, str] | None, bytes]] = [
    (None, b"not json"),
    (None, b"\xff\xfe\x00garbage"),
    (None, b"[1, 2, 3]"),
    (None, b""),
    (None, json.dumps({"outcome": "maybe"}).encode()),
    (None, json.dumps({"outcome": "succeeded", "result": [1]}).encode()),
    (None, json.dumps({"outcome": "failed", "error": "just a string"}).encode()),
    (None, json.dumps({"outcome": "rejected", "error": {"code": 7}}).encode()),
    (None, b'{"outcome": "succeeded", "result": {"x": NaN}}'),
    (None, b'{"a":' * 3000),  # within the size limit, too deep
    (None, Reply.succeeded({"blob": "x" * (REPLY_LIMIT + 1)}).encode()),
    ({"Status": "404", "Description": "not here"}, b""),
]
"""Malformed replies: each must be counted in ``malformed_replies`` and dropped."""


def _command(**changes: object) -> Command:
    fields: dict[str, object] = {
        "saga_id": "ghost",
        "saga_name": "crash_order",
        "step": "create",
        "direction": Direction.FORWARD,
        "attempt": 1,
        "service": "orders",
        "command": "do",
        "payload": {},
    }
    return Command(**{**fields, **changes})  # type: ignore[arg-type]


def garbage_commands() -> list[tuple[dict[str, str] | None, bytes]]:
    """Malformed commands: each must get a ``bad_request`` and count in ``bad_requests``."""
    good = _command().headers()
    return [
        (None, b"{}"),
        ({"Saga-Id": "ghost"}, b"{}"),
        (good, b"not json"),
        (good, b"[1]"),
        (good, b'{"a": Infinity}'),
        (good, b"[" * 3000),
        ({**good, "Saga-Direction": "sideways"}, b"{}"),
        ({**good, "Saga-Attempt": "0"}, b"{}"),
        ({**good, "Idempotency-Key": "someone-else/x/forward"}, b"{}"),
        (good, json.dumps({"blob": "x" * 600_000}).encode()),  # past the participant's limit
    ]


class Rogue:
    """Sniffs commands on ``subjects`` and answers each with every malformed reply, plus a
    well-formed reply for a token nobody waits for."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.malformed_sent = 0
        self.stray_sent = 0
        self.seen: list[str] = []

    async def on_command(self, msg: Msg) -> None:
        reply_to: str = msg.reply
        if not reply_to.startswith("_SAGA_REPLY."):
            return  # the test's own malformed commands
        self.seen.append(msg.subject)
        for headers, body in GARBAGE_REPLIES:
            await self.nc.publish(reply_to, body, headers=headers)
            self.malformed_sent += 1
        prefix = reply_to.rpartition(".")[0]
        await self.nc.publish(f"{prefix}.999999999", Reply.succeeded({"forged": True}).encode())
        self.stray_sent += 1


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def test_sagas_complete_through_garbage_replies_and_commands(
    nats_server: NatsServer, raw: Client, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rogue = Rogue(raw)
    for service in ("orders", "payments", "inventory"):
        await raw.subscribe(f"{service}.*", cb=rogue.on_command)
    await flush_pending(raw)

    services = CountingServices()
    await services.serve(nats_server.url)
    transport = NatsTransport(nats_server.url, max_payload_bytes=REPLY_LIMIT)
    try:
        async with Coordinator(SqlSagaLog(sqlite_url), transport, sagas=[ORDER]) as coordinator:
            in_flight = asyncio.gather(*(coordinator.execute(ORDER, {"n": n}) for n in range(5)))

            # Meanwhile, malformed commands straight at each service.
            bad = garbage_commands()
            for service in ("orders", "payments", "inventory"):
                for headers, body in bad:
                    msg = await raw.request(
                        f"{service}.do", body, timeout=TIMEOUT_S, headers=headers
                    )
                    reply = Reply.decode(headers=msg.headers, body=msg.data)
                    assert reply.error is not None
                    assert reply.error.code == "bad_request", (service, headers, body[:40])

            results = await asyncio.wait_for(in_flight, TIMEOUT_S)
            # The coordinator is still fine: one more saga after all that.
            after = await asyncio.wait_for(coordinator.execute(ORDER, {"n": "after"}), TIMEOUT_S)
            await wait_until(lambda: transport.malformed_replies >= rogue.malformed_sent)
            await wait_until(lambda: transport.unmatched_replies >= rogue.stray_sent)
            bad_requests = {s.participant.name: s.bad_requests for s in services._servers}
    finally:
        await services.stop()

    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 5
    assert after.status is SagaStatus.COMPLETED
    assert len(rogue.seen) == 6 * 3, "the rogue saw every command"
    assert transport.malformed_replies == rogue.malformed_sent
    assert transport.unmatched_replies == rogue.stray_sent
    assert transport.reply_handler_errors == 0
    assert bad_requests == {name: len(bad) for name in ("orders", "payments", "inventory")}
    # Effectively once: garbage never ran a handler, and no real command ran twice.
    assert len(services.runs) == 6 * 3
    assert all(n == 1 for n in services.runs.values())
    assert "dropping a malformed reply" in caplog.text
    assert "bad request on orders.do" in caplog.text
    assert "no command waits for it" in caplog.text


async def test_a_service_answering_garbage_is_retried_until_a_real_one_answers(
    nats_server: NatsServer, raw: Client, sqlite_url: str
) -> None:
    saga = Saga(
        name="garbage_retry",
        steps=(
            Step(
                name="stock",
                service="inventory",
                command="do",
                compensation="undo",
                retry=RetryPolicy(initial_interval=timedelta(milliseconds=50), max_attempts=20),
                timeout=timedelta(milliseconds=300),
            ),
        ),
    )
    garbage_answers = 0
    answered_twice = asyncio.Event()

    async def impostor(msg: Msg) -> None:
        nonlocal garbage_answers
        await msg.respond(b"\x00\x01 this is not a reply")
        garbage_answers += 1
        if garbage_answers >= 2:
            answered_twice.set()

    impostor_sub = await raw.subscribe("inventory.do", cb=impostor)
    await flush_pending(raw)
    services = CountingServices()
    inventory = next(p for p in services.participants if p.name == "inventory")
    log = SqlSagaLog(sqlite_url)
    transport = NatsTransport(nats_server.url)
    async with Coordinator(log, transport, sagas=[saga]) as coordinator:
        handle = await coordinator.start(saga, {})
        outcome = asyncio.create_task(handle.result())  # waits while it is surely running
        await asyncio.wait_for(answered_twice.wait(), TIMEOUT_S)
        await impostor_sub.unsubscribe()
        async with inventory.serving(nats_server.url):
            result = await asyncio.wait_for(outcome, TIMEOUT_S)
        events = await log.events(handle.saga_id)
    assert result.status is SagaStatus.COMPLETED
    assert transport.malformed_replies >= 2
    sent = [e for e in events if e.type is EventType.STEP_SENT]
    assert len(sent) >= 3, "two attempts answered with garbage timed out and were retried"
    assert len({e.data["attempt"] for e in sent}) == len(sent)
    assert services.runs[("inventory", "forward", handle.saga_id)] == 1


MALFORMED_HEADER_BLOCKS = [
    b"NATS/1.0\r\nno-colon-here\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"NATS/1.0 abc\r\n\r\n",
    b"NATS/1.0\r\n:\r\n\r\n",
    b"NATS/1.0\r\n\xff\xfe: \xff\r\n\r\n",
]


async def hpub(server: NatsServer, subject: str, reply: str, headers: bytes, body: bytes) -> None:
    """Publish with a hand-made header block over the raw protocol; wait for the server."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        await reader.readline()  # INFO
        size = len(headers) + len(body)
        writer.write(b'CONNECT {"headers":true,"verbose":false}\r\n')
        target = f"{subject} {reply}" if reply else subject
        writer.write(f"HPUB {target} {len(headers)} {size}\r\n".encode())
        writer.write(headers + body + b"\r\nPING\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), TIMEOUT_S) == b"PONG\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_malformed_header_blocks_are_bad_requests_and_dropped_replies(
    nats_server: NatsServer,
) -> None:
    services = CountingServices()
    orders = next(p for p in services.participants if p.name == "orders")
    collected: list[Reply] = []

    async def on_reply(command: Command, reply: Reply) -> None:
        collected.append(reply)

    transport = NatsTransport(nats_server.url)
    await transport.open(on_reply)
    try:
        async with orders.serving(nats_server.url) as server:
            for block in MALFORMED_HEADER_BLOCKS:
                await hpub(nats_server, "orders.do", "_INBOX.nobody", block, b"{}")
                await hpub(nats_server, f"{transport.reply_prefix}.1", "", block, b"junk")
            await wait_until(lambda: server.bad_requests == len(MALFORMED_HEADER_BLOCKS))
            await wait_until(
                lambda: (
                    transport.malformed_replies + transport.unmatched_replies
                    == len(MALFORMED_HEADER_BLOCKS)
                )
            )
            # Both still work.
            sent = _command(saga_id="after-garbage")
            await transport.send(sent)
            await wait_until(lambda: bool(collected))
    finally:
        await transport.close()
    assert collected[0].outcome.value == "succeeded"
    assert services.runs == {("orders", "forward", "after-garbage"): 1}
