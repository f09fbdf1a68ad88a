"""Outside events (``saga.event``) and completion announcements (``saga.completions``) over a
real nats-server: a coordinator answers events in the queue group, ``send_event`` raises what
the coordinator refused, every coordinator hears every announcement, malformed ones are
dropped, and the documented permissions allow all of it.

``Coordinator.signal`` is a stand-in (tests/transport/signal_fake.py) that keeps to the
design's contract; the coordinator, its transport and NATS are real.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from saga import Coordinator, NatsTransport, SqlSagaLog
from saga.client import send_event
from saga.engine import replay
from saga.errors import (
    ProtocolError,
    SagaNotFoundError,
    StateError,
    TransportError,
)
from saga.protocol import COMPLETIONS_SUBJECT, Direction, Reply
from saga.testing import InMemorySagaLog, InMemoryTransport
from saga.transport.completions import Completion
from saga.transport.nats_server import NatsServer
from saga.transport.security import NatsSecurity
from saga.transport.signals import (
    EVENT_SUBJECT,
    SignalAnswer,
    SignalRefusal,
    SignalReply,
    SignalRequest,
    decode_answer,
)
from tests.coordinator.shop import Shop
from tests.transport.signal_fake import APPROVAL, FakeSignals, approval_saga

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]

DOCS_CONFIG = Path(__file__).parents[2] / "docs" / "nats-permissions.conf"
WAIT_S = 10.0


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def _swallow(msg: Msg) -> None:
    del msg  # never answered: the step waits for its (hour-long) timeout


@pytest.fixture
async def coordinator(nats_server: NatsServer, client: Client) -> AsyncIterator[Coordinator]:
    # orders.reserve is never answered: the saga stays running before its wait step.
    await client.subscribe("orders.>", cb=_swallow)
    await client.flush()
    transport = NatsTransport(nats_server.url)
    coordinator = Coordinator(
        InMemorySagaLog(), transport, sagas=[approval_saga()], max_input_bytes=2048
    )
    async with coordinator:
        await coordinator.start("approve", {}, saga_id="a-1")  # open() serves saga.event
        yield coordinator


@pytest.fixture
def fake(coordinator: Coordinator) -> FakeSignals:
    return FakeSignals(coordinator)


async def test_an_event_over_nats_reaches_the_saga_once_with_the_sender_nats(
    client: Client, coordinator: Coordinator, fake: FakeSignals
) -> None:
    reply = await send_event(client, "a-1", APPROVAL, event_id="hook-1", payload={"ok": True})
    assert reply == SignalReply(
        saga_id="a-1", event=APPROVAL, id="hook-1", recorded=True, step="approval",
        status="running",
    )  # fmt: skip
    [call] = fake.calls
    assert (call.event_id, call.payload, call.sender) == ("hook-1", {"ok": True}, "nats")
    again = await send_event(client, "a-1", APPROVAL, event_id="hook-1")
    assert again.recorded is False
    assert len(fake.calls) == 1


async def test_send_event_connects_by_url_for_one_call(
    nats_server: NatsServer, fake: FakeSignals
) -> None:
    reply = await send_event(nats_server.url, "a-1", APPROVAL, event_id="by-url")
    assert reply.recorded
    assert [call.event_id for call in fake.calls] == ["by-url"]


async def test_refusals_come_back_as_the_errors_signal_raises(
    client: Client, fake: FakeSignals, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="saga.coordinator.signals")
    with pytest.raises(SagaNotFoundError, match="no saga 'nobody'") as missing:
        await send_event(client, "nobody", APPROVAL, event_id="x")
    assert missing.value.saga_id == "nobody"
    with pytest.raises(StateError, match="waits for: 'manager_approved'"):
        await send_event(client, "a-1", "paid", event_id="x")
    with pytest.raises(ProtocolError, match="over the 2048 byte limit"):
        await send_event(client, "a-1", APPROVAL, event_id="x", payload={"a": "b" * 3000})
    await send_event(client, "a-1", APPROVAL, event_id="first")
    with pytest.raises(StateError, match="took the event 'first'"):
        await send_event(client, "a-1", APPROVAL, event_id="second")
    fake.finished.add("a-1")
    with pytest.raises(StateError, match="is compensated"):
        await send_event(client, "a-1", APPROVAL, event_id="third")
    assert [call.event_id for call in fake.calls] == ["first"]
    lines = [r.getMessage() for r in caplog.records if r.name == "saga.coordinator.signals"]
    assert len(lines) == 5
    assert all("from nats" in line for line in lines)


async def test_the_client_refuses_a_malformed_event_before_sending_it(
    client: Client, fake: FakeSignals
) -> None:
    with pytest.raises(ProtocolError, match="'id' 'a b' is not an event id"):
        await send_event(client, "a-1", APPROVAL, event_id="a b")
    with pytest.raises(ProtocolError, match="not an event name"):
        await send_event(client, "a-1", "manager.approved", event_id="x")
    with pytest.raises(ProtocolError, match="not JSON-serialisable"):
        await send_event(client, "a-1", APPROVAL, event_id="x", payload={"when": object()})
    assert fake.calls == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "not valid JSON"),
        (b'{"saga_id": "a-1", "event": "manager_approved"}', "'id' is missing"),
        (b'{"saga_id": "a-1", "event": "manager_approved", "id": "x", "payload": 5}', "not int"),
    ],
)
async def test_a_malformed_request_is_answered_with_a_refusal_and_logged(
    client: Client,
    coordinator: Coordinator,
    fake: FakeSignals,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    words: str,
) -> None:
    caplog.set_level(logging.INFO, logger="saga.transport.nats_signal")
    msg = await client.request(EVENT_SUBJECT, body, timeout=WAIT_S)
    answer = decode_answer(msg.data)
    assert isinstance(answer, SignalRefusal)
    assert answer.code == "invalid"
    assert words in answer.message
    assert fake.calls == []
    assert any("refused an event from nats (invalid)" in r.getMessage() for r in caplog.records)


async def test_without_a_coordinator_send_event_raises_a_transport_error_with_the_id(
    client: Client,
) -> None:
    with pytest.raises(TransportError, match=f"no coordinator serves {EVENT_SUBJECT}") as caught:
        await send_event(client, "a-1", APPROVAL, event_id="x")
    assert caught.value.saga_id == "a-1"


async def test_coordinators_share_event_requests_in_their_queue_group(
    nats_server: NatsServer, client: Client
) -> None:
    answered: Counter[str] = Counter()

    def handler(name: str) -> object:
        async def answer(request: SignalRequest) -> SignalAnswer:
            answered[name] += 1
            return SignalReply(saga_id=request.saga_id, event=request.event, id=request.id,
                               recorded=True, step=None, status="running")  # fmt: skip

        return answer

    transports = [NatsTransport(nats_server.url, name=f"c{i}") for i in range(2)]
    for i, transport in enumerate(transports):
        await transport.open(_ignore_replies)
        await transport.serve_signals(handler(f"c{i}"))  # type: ignore[arg-type]
    try:
        for n in range(40):
            reply = await send_event(client, f"s-{n}", APPROVAL, event_id=f"e-{n}")
            assert reply.id == f"e-{n}"
        assert sum(answered.values()) == 40  # each request answered by exactly one
        # A second subscription on the same connection is refused; stopping is idempotent.
        with pytest.raises(TransportError, match="serves events already"):
            await transports[0].serve_signals(handler("again"))  # type: ignore[arg-type]
        await transports[0].stop_signals()
        await transports[0].stop_signals()
        for n in range(10):
            await send_event(client, f"t-{n}", APPROVAL, event_id=f"f-{n}")
        assert answered["c1"] >= 10
    finally:
        for transport in transports:
            await transport.close()


async def _ignore_replies(command: object, reply: Reply) -> None:
    del command, reply


async def test_every_transport_hears_every_completion_and_drops_malformed_ones(
    nats_server: NatsServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    heard: dict[str, list[tuple[str, str, Direction]]] = {"a": [], "b": []}
    arrived = asyncio.Event()

    def handler(name: str) -> object:
        async def on_completion(saga_id: str, step: str, direction: Direction) -> None:
            if step == "boom":
                raise RuntimeError("a bug in the handler")
            heard[name].append((saga_id, step, direction))
            if all(len(items) == 2 for items in heard.values()):
                arrived.set()

        return on_completion

    transports = {name: NatsTransport(nats_server.url, name=name) for name in heard}
    for name, transport in transports.items():
        await transport.open(_ignore_replies)
        await transport.serve_completions(handler(name))  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG, logger="saga.transport.nats_signal")
    try:
        good = Completion(saga_id="a-1", step="ship", direction=Direction.FORWARD)
        await client.publish(COMPLETIONS_SUBJECT, b"", headers=good.headers())
        await client.publish(COMPLETIONS_SUBJECT, b"", headers={"Saga-Id": "a-1"})
        await client.publish(COMPLETIONS_SUBJECT, b"no headers at all")
        await client.publish(
            COMPLETIONS_SUBJECT, b"", headers={**good.headers(), "Idempotency-Key": "x/y/forward"}
        )
        boom = Completion(saga_id="a-1", step="boom", direction=Direction.FORWARD)
        await client.publish(COMPLETIONS_SUBJECT, b"", headers=boom.headers())
        undo = Completion(saga_id="a-2", step="hold", direction=Direction.COMPENSATE)
        await client.publish(COMPLETIONS_SUBJECT, b"", headers=undo.headers())
        await asyncio.wait_for(arrived.wait(), WAIT_S)
        expected = [("a-1", "ship", Direction.FORWARD), ("a-2", "hold", Direction.COMPENSATE)]
        assert heard == {"a": expected, "b": expected}
        for transport in transports.values():
            completions = transport.completions
            assert completions is not None
            assert (completions.received, completions.malformed) == (3, 3)
            assert completions.handler_errors == 1
        dropped = [r for r in caplog.records if "malformed completion" in r.getMessage()]
        assert len(dropped) == 6
        assert all(r.levelno == logging.DEBUG for r in dropped)
    finally:
        for transport in transports.values():
            await transport.close()
    assert all(transport.completions is None for transport in transports.values())


async def test_serving_on_a_closed_transport_is_a_transport_error(nats_server: NatsServer) -> None:
    transport = NatsTransport(nats_server.url)

    async def nothing(saga_id: str, step: str, direction: Direction) -> None:
        del saga_id, step, direction

    with pytest.raises(TransportError, match="closed"):
        await transport.serve_completions(nothing)
    await transport.open(_ignore_replies)
    await transport.serve_completions(nothing)
    with pytest.raises(TransportError, match="hears completions already"):
        await transport.serve_completions(nothing)
    await transport.close()
    with pytest.raises(TransportError, match="closed"):
        await transport.serve_completions(nothing)


async def test_the_in_memory_transport_hands_announcements_to_the_coordinator() -> None:
    transport = InMemoryTransport(Shop().participants)
    heard: list[tuple[str, str, Direction]] = []

    async def on_completion(saga_id: str, step: str, direction: Direction) -> None:
        heard.append((saga_id, step, direction))

    assert not await transport.announce_completion("a-1", "ship")  # closed: lost
    with pytest.raises(TransportError, match="not open"):
        await transport.serve_completions(on_completion)
    await transport.open(_ignore_replies)
    assert not await transport.announce_completion("a-1", "ship")  # not served: lost
    await transport.serve_completions(on_completion)
    assert await transport.announce_completion("a-1", "ship")
    assert await transport.announce_completion("a-1", "hold", Direction.COMPENSATE)
    await transport.close()
    assert not await transport.announce_completion("a-1", "late")
    assert heard == [("a-1", "ship", Direction.FORWARD), ("a-1", "hold", Direction.COMPENSATE)]
    assert len(transport.announced) == 5


async def test_the_documented_permissions_allow_events_and_completions(
    tmp_path: Path,
) -> None:
    users = ("coordinator", "orders", "payments", "inventory", "shipping")
    variables = "".join(f'SAGA_{u.upper()}_PASSWORD: "pw-{u}"\n' for u in users)
    login = NatsSecurity(user="saga-coordinator", password="pw-coordinator")
    config = variables + DOCS_CONFIG.read_text()
    async with NatsServer(jetstream=False, config=config) as server:
        transport = NatsTransport(server.url, security=login)
        coordinator = Coordinator(InMemorySagaLog(), transport, sagas=[approval_saga()])
        heard: list[tuple[str, str, Direction]] = []
        arrived = asyncio.Event()

        async def on_completion(saga_id: str, step: str, direction: Direction) -> None:
            heard.append((saga_id, step, direction))
            arrived.set()

        orders = await nats.connect(server.url, user="orders", password="pw-orders")
        await orders.subscribe("orders.>", cb=_swallow)
        await orders.flush()
        # Hear what open() subscribes the coordinator to on saga.completions.
        coordinator._on_completion = on_completion  # type: ignore[method-assign]
        async with coordinator:
            fake = FakeSignals(coordinator)
            await coordinator.start("approve", {}, saga_id="a-1")
            reply = await send_event(server.url, "a-1", APPROVAL, event_id="ok", security=login)
            assert reply.recorded
            assert [call.sender for call in fake.calls] == ["nats"]
            # A service announces a completion with its own login.
            try:
                done = Completion(saga_id="a-1", step="hold", direction=Direction.FORWARD)
                await orders.publish(COMPLETIONS_SUBJECT, b"", headers=done.headers())
                await orders.flush()
                await asyncio.wait_for(arrived.wait(), WAIT_S)
            finally:
                await orders.close()
            assert heard == [("a-1", "hold", Direction.FORWARD)]
            assert transport.permission_violations == 0


async def test_the_real_coordinator_keeps_an_early_event_from_nats(
    nats_server: NatsServer, client: Client, sql_url: str
) -> None:
    await client.subscribe("orders.>", cb=_swallow)
    await client.flush()
    transport = NatsTransport(nats_server.url)
    coordinator = Coordinator(SqlSagaLog(sql_url), transport, sagas=[approval_saga()])
    async with coordinator:
        await coordinator.start("approve", {}, saga_id="r-1")
        reply = await send_event(client, "r-1", APPROVAL, event_id="early", payload={"n": 1})
        assert (reply.recorded, reply.step, reply.status) == (True, None, "running")
        again = await send_event(client, "r-1", APPROVAL, event_id="early", payload={"n": 2})
        assert again.recorded is False
        with pytest.raises(StateError, match="waits for"):
            await send_event(client, "r-1", "paid", event_id="x")
        [signal] = replay(await coordinator.log.events("r-1")).signals
        assert (signal.id, signal.payload, signal.sender, signal.step) == (
            "early", {"n": 1}, "nats", None,
        )  # fmt: skip


async def test_an_event_published_without_a_reply_subject_is_ignored_and_logged(
    client: Client, coordinator: Coordinator, fake: FakeSignals, caplog: pytest.LogCaptureFixture
) -> None:
    transport = coordinator.transport
    assert isinstance(transport, NatsTransport)
    signals = transport.signals
    assert signals is not None
    body = SignalRequest(saga_id="a-1", event=APPROVAL, id="fire-and-forget").encode()
    await client.publish(EVENT_SUBJECT, body)
    # A request after it on the same subject is handled after it (one subscription, in order).
    assert (await send_event(client, "a-1", APPROVAL, event_id="asked")).recorded
    assert (signals.refused, signals.answered) == (1, 1)
    assert [call.event_id for call in fake.calls] == ["asked"]
    assert any("without a reply subject" in r.getMessage() for r in caplog.records)
