"""Flow control: the per-service bound, its queue (oldest saga first), slot release, and the
adaptive limit."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from saga import Coordinator, Participant, RetryPolicy, Saga, SagaStatus, Step
from saga.coordinator.dispatch import AdaptiveLimit, Dispatcher, ServiceLoad, slot_key
from saga.errors import ConfigError
from saga.events import EventType
from saga.participant import CommandContext
from saga.protocol import Command, Direction
from saga.testing import FakeClock, Fault, InMemorySagaLog, InMemoryTransport

TIMEOUT_MS = 10_000


def _command(saga_id: str, service: str = "svc", attempt: int = 1) -> Command:
    return Command(
        saga_id=saga_id,
        saga_name="s",
        step="a",
        direction=Direction.FORWARD,
        attempt=attempt,
        service=service,
        command="do",
        payload={},
    )


class _Wire:
    """The dispatcher's two collaborators: what it transmitted and what it asked to claim."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.unwanted: set[str] = set()
        self.claimed: list[str] = []

    async def transmit(self, command: Command) -> None:
        self.sent.append(command.saga_id)

    def claim(self, command: Command, timeout_ms: int) -> bool:
        self.claimed.append(command.saga_id)
        return command.saga_id not in self.unwanted


def _dispatcher(
    wire: _Wire, clock: FakeClock, limit: int | None = 2, adaptive: bool = False
) -> Dispatcher:
    return Dispatcher(clock, wire.transmit, wire.claim, limit=limit, adaptive=adaptive)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_queued_commands_go_oldest_saga_first() -> None:
    """A burst's second steps (of sagas started first) overtake later sagas' first steps."""
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock, limit=1)
    assert await dispatcher.submit(_command("busy"), TIMEOUT_MS, (0, "busy"))
    for started_ms, saga_id in [(30, "young"), (10, "old"), (20, "middle"), (10, "also-old")]:
        assert not await dispatcher.submit(_command(saga_id), TIMEOUT_MS, (started_ms, saga_id))
    for saga_id in ["busy", "also-old", "old", "middle"]:
        dispatcher.on_reply(_command(saga_id))
        await _settle()
    assert wire.sent == ["busy", "also-old", "old", "middle", "young"]
    assert dispatcher.load() == [ServiceLoad("svc", queued=0, in_flight=1, limit=1)]


async def test_a_forgotten_saga_leaves_the_queue_order_too() -> None:
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock, limit=1)
    await dispatcher.submit(_command("busy"), TIMEOUT_MS, (0, "busy"))
    await dispatcher.submit(_command("gone"), TIMEOUT_MS, (1, "gone"))
    await dispatcher.submit(_command("next"), TIMEOUT_MS, (2, "next"))
    dispatcher.forget("gone")
    dispatcher.on_reply(_command("busy"))
    await _settle()
    assert wire.sent == ["busy", "next"]
    assert wire.claimed == ["next"], "a forgotten command is never even offered"


async def test_at_most_limit_in_flight_the_rest_wait_in_order() -> None:
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock)
    sent_now = [await dispatcher.submit(_command(f"s{i}"), TIMEOUT_MS) for i in range(5)]
    assert sent_now == [True, True, False, False, False]
    assert wire.sent == ["s0", "s1"]
    assert dispatcher.load() == [ServiceLoad("svc", queued=3, in_flight=2, limit=2)]

    dispatcher.on_reply(_command("s1"))
    await _settle()
    assert wire.sent == ["s0", "s1", "s2"]
    dispatcher.on_reply(_command("s1"))  # a duplicate reply frees nothing more
    await _settle()
    assert wire.sent == ["s0", "s1", "s2"]
    assert dispatcher.load() == [ServiceLoad("svc", queued=2, in_flight=2, limit=2)]

    dispatcher.on_reply(_command("s0"))
    dispatcher.on_reply(_command("s2"))
    await _settle()
    assert wire.sent == ["s0", "s1", "s2", "s3", "s4"]


async def test_services_are_bounded_separately() -> None:
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock, limit=1)
    assert await dispatcher.submit(_command("a1", "a"), TIMEOUT_MS)
    assert not await dispatcher.submit(_command("a2", "a"), TIMEOUT_MS)
    assert await dispatcher.submit(_command("b1", "b"), TIMEOUT_MS)
    assert [load.queued for load in dispatcher.load()] == [1, 0]


async def test_a_command_the_saga_no_longer_wants_is_dropped_not_sent() -> None:
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock, limit=1)
    for saga_id in ("s0", "s1", "s2"):
        await dispatcher.submit(_command(saga_id), TIMEOUT_MS)
    wire.unwanted.add("s1")
    dispatcher.on_reply(_command("s0"))
    await _settle()
    assert wire.claimed == ["s1", "s2"]
    assert wire.sent == ["s0", "s2"]


async def test_timeout_and_forget_release_slots_and_forget_drops_the_queue() -> None:
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock, limit=1)
    for saga_id in ("s0", "s1", "s2"):
        await dispatcher.submit(_command(saga_id), TIMEOUT_MS)
    dispatcher.on_timeout(slot_key(_command("s0")))
    dispatcher.on_timeout(slot_key(_command("s0")))  # twice is harmless
    await _settle()
    assert wire.sent == ["s0", "s1"]
    dispatcher.forget("s2")  # settled while queued: never sent
    dispatcher.forget("s1")  # settled while in flight: its slot is free
    await _settle()
    assert wire.sent == ["s0", "s1"]
    assert dispatcher.load() == [ServiceLoad("svc", queued=0, in_flight=0, limit=1)]


async def test_a_lost_reply_frees_its_slot_once_its_timeout_has_passed() -> None:
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock, limit=1)
    await dispatcher.submit(_command("lost"), TIMEOUT_MS)
    assert not await dispatcher.submit(_command("next"), TIMEOUT_MS)
    await clock.advance(TIMEOUT_MS)
    assert await dispatcher.submit(_command("later"), TIMEOUT_MS) is False  # FIFO: after next
    await _settle()
    assert wire.sent == ["lost", "next"]


async def test_unbounded_sends_everything_at_once() -> None:
    wire, clock = _Wire(), FakeClock()
    dispatcher = _dispatcher(wire, clock, limit=None, adaptive=True)
    assert all([await dispatcher.submit(_command(f"s{i}"), TIMEOUT_MS) for i in range(100)])
    assert dispatcher.load() == [ServiceLoad("svc", queued=0, in_flight=100, limit=None)]


def test_adaptive_limit_shrinks_when_a_service_slows_down_and_grows_back() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(16)
    assert limit.value == 4  # starts low

    def window(latency_ms: int) -> None:
        """One limit's worth of commands sent together, all answered after ``latency_ms``."""
        sent = clock.now_ms()
        clock._now_ms += latency_ms  # a synchronous test: move the fake clock directly
        for _ in range(limit.value):
            limit.on_reply(
                sent_ms=sent, now_ms=clock.now_ms(), timeout_ms=TIMEOUT_MS, in_flight=limit.value
            )

    for _ in range(10):
        window(10)
    assert limit.value == 16  # fast and busy: grows up to the maximum, never past it

    window(TIMEOUT_MS // 4)  # between a sixteenth and a quarter of the timeout: holds
    assert limit.value == 16
    window(TIMEOUT_MS // 4 + 1)  # slower than a quarter of the timeout
    assert limit.value == 8  # halved once for the whole window, not once per reply
    window(TIMEOUT_MS // 2)
    window(TIMEOUT_MS // 2)
    window(TIMEOUT_MS // 2)
    assert limit.value == 1
    window(TIMEOUT_MS)
    assert limit.value == 1  # never below one

    for _ in range(10):
        window(10)
    assert limit.value == 16

    for expected in (8, 4, 4):  # timeouts halve it, but not below where it started
        sent = clock.now_ms()
        clock._now_ms += TIMEOUT_MS
        limit.on_timeout(sent_ms=sent, now_ms=clock.now_ms())
        assert limit.value == expected
    window(TIMEOUT_MS // 2)
    assert limit.value == 2  # a slow reply is load: it goes lower
    sent = clock.now_ms()
    clock._now_ms += TIMEOUT_MS
    limit.on_timeout(sent_ms=sent, now_ms=clock.now_ms())
    assert limit.value == 2  # and a timeout never raises it


def test_an_idle_service_does_not_grow_the_limit() -> None:
    limit = AdaptiveLimit(64)
    for _ in range(100):
        limit.on_reply(sent_ms=0, now_ms=5, timeout_ms=TIMEOUT_MS, in_flight=1)
    assert limit.value == 16


# -- through the coordinator ----------------------------------------------------------------


class _Gated:
    """One participant whose handler waits for ``open`` (per saga id) before it answers."""

    def __init__(self) -> None:
        self.participant = Participant("svc")
        self.gates: dict[str, asyncio.Event] = {}
        self.ran: list[tuple[str, str]] = []
        for name in ("do", "undo"):
            self.participant.command(name)(self._handler(name))

    def gate(self, saga_id: str) -> asyncio.Event:
        return self.gates.setdefault(saga_id, asyncio.Event())

    def _handler(self, name: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            self.ran.append((name, ctx.saga_id))
            if name == "do":
                await self.gate(ctx.saga_id).wait()
            return {}

        return handle


def _lose_first_do(command: Command) -> Fault:
    lost = (command.saga_id, command.command) == ("first", "do")
    return Fault.LOSE_COMMAND if lost else Fault.DELIVER


def _one_step(max_attempts: int = 1) -> Saga:
    return Saga(
        name="one",
        steps=(
            Step(
                name="a",
                service="svc",
                command="do",
                compensation="undo",
                timeout=timedelta(milliseconds=TIMEOUT_MS),
                retry=RetryPolicy(max_attempts=max_attempts),
            ),
        ),
    )


async def _wait_for(predicate: Any) -> None:
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - the state under test exposes no event
            await asyncio.sleep(0.001)


async def test_a_steps_timeout_counts_from_when_its_command_is_sent() -> None:
    gated, log, clock = _Gated(), InMemorySagaLog(), FakeClock()
    saga = _one_step()
    # The first command is lost: its saga times out, and only then is the second one sent.
    transport = InMemoryTransport(
        [gated.participant],
        intercept=_lose_first_do,
    )
    coord = Coordinator(
        log, transport, sagas=[saga], clock=clock, max_in_flight_per_service=1, adaptive_limit=False
    )
    async with coord:
        first = await coord.start(saga, {}, saga_id="first")
        second = await coord.start(saga, {}, saga_id="second")
        assert [c.saga_id for c in transport.sent] == ["first"]
        assert coord.service_load() == [ServiceLoad("svc", queued=1, in_flight=1, limit=1)]

        await clock.advance(TIMEOUT_MS)  # first times out: its slot goes to second
        await _wait_for(lambda: ("do", "second") in gated.ran)
        await clock.advance(TIMEOUT_MS - 1)  # second has waited 2 timeouts, but was sent 1 ago
        await asyncio.sleep(0.05)
        second_events = await log.events("second")
        assert not [e for e in second_events if e.type is EventType.STEP_FAILED]

        gated.gate("second").set()
        assert (await asyncio.wait_for(second.result(), 10)).status is SagaStatus.COMPLETED
        assert (await asyncio.wait_for(first.result(), 10)).status is SagaStatus.COMPENSATED
        await _wait_for(lambda: coord.service_load()[0].in_flight == 0)


async def test_without_flow_control_waiting_at_the_participant_counts_against_the_timeout() -> None:
    """The same two sagas, unbounded: both are sent at once and both time out together."""
    gated, log, clock = _Gated(), InMemorySagaLog(), FakeClock()
    saga = _one_step()
    transport = InMemoryTransport(
        [gated.participant],
        intercept=_lose_first_do,
    )
    coord = Coordinator(log, transport, sagas=[saga], clock=clock, max_in_flight_per_service=None)
    async with coord:
        await coord.start(saga, {}, saga_id="first")
        await coord.start(saga, {}, saga_id="second")
        assert [c.saga_id for c in transport.sent] == ["first", "second"]
        await clock.advance(TIMEOUT_MS)  # second was answering, but its time ran out

        async def second_failed() -> list[str]:
            events = await log.events("second")
            return [e.data["error"]["code"] for e in events if e.type is EventType.STEP_FAILED]

        async with asyncio.timeout(10):
            while not await second_failed():  # noqa: ASYNC110 (polling the log)
                await asyncio.sleep(0.001)
        assert (await second_failed())[0] == "timeout"
        gated.gate("second").set()


async def test_a_queued_command_of_a_cancelled_saga_is_never_sent() -> None:
    gated, log, clock = _Gated(), InMemorySagaLog(), FakeClock()
    saga = _one_step()
    transport = InMemoryTransport([gated.participant])
    coord = Coordinator(
        log, transport, sagas=[saga], clock=clock, max_in_flight_per_service=1, adaptive_limit=False
    )
    async with coord:
        await coord.start(saga, {}, saga_id="busy")
        queued = await coord.start(saga, {}, saga_id="queued")
        await coord.cancel("queued", "changed my mind")
        gated.gate("busy").set()
        result = await asyncio.wait_for(queued.result(), 10)
        await _wait_for(lambda: coord.service_load()[0].in_flight == 0)
    assert result.status is SagaStatus.COMPENSATED
    assert ("do", "queued") not in gated.ran
    assert [(c.saga_id, c.command) for c in transport.sent] == [
        ("busy", "do"),
        ("queued", "undo"),
    ]


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_a_config_error(limit: int) -> None:
    with pytest.raises(ConfigError, match="max_in_flight_per_service"):
        Coordinator(
            InMemorySagaLog(), InMemoryTransport([]), sagas=[], max_in_flight_per_service=limit
        )
