"""NatsTransport against a real nats-server: publish, reply matching, bad replies, reconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

import saga.transport.nats as nats_transport
from saga.errors import ProtocolError, TransportError
from saga.protocol import Command, Direction, Outcome, Reply
from saga.transport.nats import NatsTransport, flush_pending
from saga.transport.nats_server import NatsServer
from tests.transport.replies import ReplyCollector, wait_until

pytestmark = pytest.mark.nats


def command(saga_id: str = "saga-1", *, service: str = "echo", attempt: int = 1) -> Command:
    return Command(
        saga_id=saga_id,
        saga_name="order",
        step="reserve",
        direction=Direction.FORWARD,
        attempt=attempt,
        service=service,
        command="reserve",
        payload={"sku": "A-1", "qty": 2},
    )


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


@pytest.fixture
async def replies() -> ReplyCollector:
    return ReplyCollector()


@pytest.fixture
async def transport(
    nats_server: NatsServer, replies: ReplyCollector
) -> AsyncIterator[NatsTransport]:
    transport = NatsTransport(nats_server.url, name="test-coordinator")
    await transport.open(replies)
    yield transport
    await transport.close()


async def test_send_publishes_headers_body_and_a_reply_subject(
    raw: Client, transport: NatsTransport, replies: ReplyCollector
) -> None:
    seen: asyncio.Queue[Msg] = asyncio.Queue()

    async def responder(msg: Msg) -> None:
        await seen.put(msg)
        await msg.respond(Reply.succeeded({"echo": json.loads(msg.data)}).encode())

    await raw.subscribe("echo.reserve", cb=responder)
    await flush_pending(raw)
    sent = command()
    await transport.send(sent)

    msg = await asyncio.wait_for(seen.get(), 30)
    assert msg.headers is not None
    assert {k: msg.headers[k] for k in sent.headers()} == sent.headers()
    assert json.loads(msg.data) == sent.payload
    assert msg.reply.startswith(transport.reply_prefix + ".")
    reply = await replies.wait_reply(sent)
    assert reply == Reply.succeeded({"echo": sent.payload})
    assert transport.pending_replies == 0


async def test_no_responders_is_a_failed_reply(
    transport: NatsTransport, replies: ReplyCollector
) -> None:
    sent = command(service="nobody")
    await transport.send(sent)
    reply = await replies.wait_reply(sent)
    assert reply.outcome is Outcome.FAILED
    assert reply.error is not None
    assert reply.error.code == "no_responders"


async def test_malformed_duplicate_and_stray_replies_are_counted_not_raised(
    raw: Client, transport: NatsTransport, replies: ReplyCollector
) -> None:
    async def responder(msg: Msg) -> None:
        await msg.respond(b"not json")
        await msg.respond(json.dumps({"outcome": "maybe"}).encode())
        await msg.respond(Reply.succeeded({"n": 1}).encode())
        await msg.respond(Reply.succeeded({"n": 2}).encode())  # a duplicate

    await raw.subscribe("echo.reserve", cb=responder)
    await raw.publish(f"{transport.reply_prefix}.999999", Reply.succeeded().encode())
    await flush_pending(raw)
    sent = command()
    await transport.send(sent)

    assert await replies.wait_reply(sent) == Reply.succeeded({"n": 1})
    await wait_until(lambda: transport.unmatched_replies >= 2)
    assert transport.malformed_replies == 2
    assert transport.unmatched_replies == 2
    assert len(replies.received) == 1


async def test_an_on_reply_error_is_logged_and_later_replies_still_arrive(
    raw: Client, nats_server: NatsServer
) -> None:
    received: list[Command] = []

    async def on_reply(cmd: Command, reply: Reply) -> None:
        received.append(cmd)
        if cmd.saga_id == "boom":
            raise RuntimeError("coordinator bug")

    async def responder(msg: Msg) -> None:
        await msg.respond(Reply.succeeded().encode())

    await raw.subscribe("echo.reserve", cb=responder)
    await flush_pending(raw)
    transport = NatsTransport(nats_server.url)
    await transport.open(on_reply)
    try:
        await transport.send(command("boom"))
        await transport.send(command("fine"))
        await wait_until(lambda: len(received) >= 2)
        assert transport.reply_handler_errors == 1
    finally:
        await transport.close()


async def test_unanswered_commands_expire(
    raw: Client, transport: NatsTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    await raw.subscribe("echo.reserve", cb=None)  # listens, never answers
    await flush_pending(raw)
    await transport.send(command("a"))
    assert transport.pending_replies == 1
    monkeypatch.setattr(nats_transport, "PENDING_REPLY_TTL_S", 0.0)
    await asyncio.sleep(0.01)
    await transport.send(command("b"))
    assert transport.expired_commands == 1
    assert transport.pending_replies == 1


async def test_oversize_command_is_a_protocol_error(nats_server: NatsServer) -> None:
    transport = NatsTransport(nats_server.url, max_payload_bytes=100)
    await transport.open(ReplyCollector())
    try:
        big = Command(**{**command().__dict__, "payload": {"blob": "x" * 200}})
        with pytest.raises(ProtocolError, match="byte limit"):
            await transport.send(big)
        assert transport.pending_replies == 0
    finally:
        await transport.close()


async def test_send_after_close_raises_and_close_is_idempotent(nats_server: NatsServer) -> None:
    transport = NatsTransport(nats_server.url)
    with pytest.raises(TransportError, match="closed"):
        await transport.send(command())
    with pytest.raises(TransportError, match="closed"):
        await transport.flush()
    await transport.open(ReplyCollector())
    with pytest.raises(TransportError, match="already open"):
        await transport.open(ReplyCollector())
    await transport.flush()
    await transport.close()
    await transport.close()
    with pytest.raises(TransportError, match="closed"):
        await transport.send(command())


async def test_first_connect_failure_raises_transport_error() -> None:
    down = NatsServer(jetstream=False)  # a free port nobody listens on
    transport = NatsTransport(down.url, connect_options={"reconnect_time_wait": 0.1})
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.open(ReplyCollector())
    await transport.close()
    await down.stop()


async def test_reconnects_after_the_server_is_killed_and_restarted(
    nats_server: NatsServer,
) -> None:
    replies = ReplyCollector()
    transport = NatsTransport(nats_server.url, connect_options={"reconnect_time_wait": 0.2})
    await transport.open(replies)
    try:
        nats_server.kill()
        await nats_server.restart()
        # Sent while the client may still be reconnecting: buffered, then delivered.
        sent = command(service="nobody")
        await transport.send(sent)
        reply = await replies.wait_reply(sent)
        assert reply.error is not None
        assert reply.error.code == "no_responders"
        assert transport.is_connected
    finally:
        await transport.close()
