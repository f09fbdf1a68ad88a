"""One fault schedule run against a user's saga: points, fault kinds, and the run's trace.

A run builds a fresh world (participants with their business state), a fresh in-memory log,
an in-memory transport and a fake clock, starts the saga through a real Coordinator, delivers
the outside events it was given, and injects each scheduled fault at its point. It then moves
the fake clock from one wake-up to the next until the saga settles (completed, compensated or
stuck) or a bound is reached.

A saga that is a graph has several commands in flight at once (a decision sends every step
whose dependencies succeeded, or every compensation whose dependents were compensated).
Their replies come back in the order the participants answer; ``DELAY_REPLY`` holds one of
them back until everything else has been answered and acted on, so the explorer also tries
the orders in which a sibling's outcome is known first.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from saga import engine
from saga.coordinator import Coordinator, SagaResult
from saga.definition import Saga
from saga.engine.payloads import CompensationStarted, StepFailed, StepSent, payload_of
from saga.events import Event, JsonObject
from saga.log.memory import InMemorySagaLog
from saga.participant import Participant
from saga.protocol import Command, Direction, Reply
from saga.testing.clock import FakeClock
from saga.testing.transport import Delivery, Fault, InMemoryTransport, Interceptor
from saga.testing.world import WitnessStore, participants_of
from saga.transport.base import ReplyHandler

_CALM_SPINS = 30
"""Loop turns with nothing new before the world counts as quiet. The coordinator and log are
in memory; participants' own I/O happens in deliveries, which are awaited until done."""
_MAX_SPINS = 100_000


class FaultKind(StrEnum):
    """What the explorer can do at one point of a saga (one command the coordinator sends)."""

    REJECT = "reject"
    """The participant says no (a business rejection) to a forward command it never saw."""
    TIMEOUT = "timeout"
    """The command is lost: no reply comes, and the step times out."""
    LOSE_REPLY = "lose_reply"
    """The participant acts, its reply is lost; the step times out and is re-sent."""
    DUPLICATE_REPLY = "duplicate_reply"
    """The reply arrives twice."""
    DUPLICATE_COMMAND = "duplicate_command"
    """The command arrives twice; the participant must act once."""
    FAIL = "fail"
    """A transient error reply (the service was down); the step is retried."""
    RESTART = "restart"
    """The participant acts, its reply is lost, and the coordinator restarts on the same log."""
    EFFECT_THEN_FAIL = "effect_then_fail"
    """The handler takes its effect, then the attempt fails (it raised after its commit); the
    step is retried, and a compensation must still undo that effect."""
    DELAY_REPLY = "delay_reply"
    """The reply arrives last: after every other command in flight was answered and the
    coordinator acted on those answers. Tried only at a command that was in flight together
    with others (the branches of a graph), where it changes the order replies arrive in."""

    @property
    def label(self) -> str:
        return self.value.upper()


ALL_FAULTS: tuple[FaultKind, ...] = tuple(FaultKind)

_TRANSPORT_FAULT = {
    FaultKind.REJECT: Fault.REJECT,
    FaultKind.TIMEOUT: Fault.LOSE_COMMAND,
    FaultKind.LOSE_REPLY: Fault.LOSE_REPLY,
    FaultKind.DUPLICATE_REPLY: Fault.DUPLICATE_REPLY,
    FaultKind.DUPLICATE_COMMAND: Fault.DUPLICATE_COMMAND,
    FaultKind.FAIL: Fault.FAIL,
    FaultKind.RESTART: Fault.LOSE_REPLY,
    FaultKind.EFFECT_THEN_FAIL: Fault.EFFECT_THEN_FAIL,
    FaultKind.DELAY_REPLY: Fault.DELIVER,
}


@dataclass(frozen=True, order=True)
class Point:
    """One command of a run: the ``occurrence``-th sending of (step, direction, attempt).

    The engine is deterministic, so a point names the same command in every run that shares
    the faults before it. A coordinator restart re-sends the command in flight with the same
    attempt number: that is the next occurrence.
    """

    step: str
    direction: Direction
    attempt: int
    occurrence: int = 1

    def __str__(self) -> str:
        text = f"{self.step} {self.direction.value} attempt {self.attempt}"
        return text if self.occurrence == 1 else f"{text} (sent again, #{self.occurrence})"


@dataclass(frozen=True)
class Injection:
    """A fault at a point."""

    point: Point
    fault: FaultKind

    def __str__(self) -> str:
        return f"{self.fault.label} at {self.point}"


Schedule = tuple[Injection, ...]


@dataclass
class Sent:
    """A command in a run's trace, the fault injected at it, and what the participant did."""

    point: Point
    command: Command
    injected: FaultKind | None
    fresh: bool
    """The participant had never been handed this idempotency key before."""
    delivery: Delivery | None = None
    """What the transport did with it (attached when the run ends)."""
    recorded: list[Reply] = field(default_factory=list)
    """Replies the participant newly recorded for this command's key (its effect)."""
    overlapped: bool = False
    """Another command was in flight while this one was (sent together, or while it was)."""
    held: bool = False
    """Its reply was held back (``DELAY_REPLY``) and passed on once all else was quiet."""


@dataclass
class Note:
    """Something between commands: time passing, a restart."""

    text: str


@dataclass
class Run:
    """Everything one schedule's run produced, for the invariants and the report."""

    schedule: Schedule
    world: object
    trace: list[Sent | Note] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    result: SagaResult | None = None
    unsettled: str | None = None
    """Why the saga did not settle, if it did not."""
    effects: Counter[tuple[str, Direction]] = field(default_factory=Counter)
    """How many times each (step, direction) was recorded by its participant."""
    commands: list[Sent] = field(default_factory=list)
    """The Sent items of the trace, in order."""

    def failed_after_effect(self, direction: Direction) -> set[str]:
        """Steps whose handler took effect in an attempt that then failed (injected)."""
        return {
            item.point.step
            for item in self.commands
            if item.point.direction is direction
            and item.delivery is not None
            and item.delivery.handler_returned
        }


class _ReorderingTransport(InMemoryTransport):
    """The in-memory transport, holding back the replies to chosen commands until released."""

    def __init__(self, participants: list[Participant], intercept: Interceptor) -> None:
        super().__init__(participants, intercept=intercept)
        self.delayed: set[int] = set()
        """Delivery indexes whose reply is to be held back."""
        self.held: list[tuple[Delivery, Reply]] = []
        self._receive: ReplyHandler | None = None

    async def open(self, on_reply: ReplyHandler) -> None:
        self._receive = on_reply
        await super().open(self._maybe_hold)

    async def _maybe_hold(self, command: Command, reply: Reply) -> None:
        delivery = next(d for d in reversed(self.deliveries) if d.command is command)
        if delivery.index in self.delayed:
            delivery.passed_on -= 1  # not yet: counted again when released
            self.held.append((delivery, reply))
            return
        if self._receive is not None:
            await self._receive(command, reply)

    def in_flight(self) -> list[int]:
        """Indexes of deliveries not yet answered (running, or their reply held back)."""
        running = [d.index for d in self.deliveries if not d.done]
        return running + [d.index for d, _ in self.held]

    async def release(self) -> bool:
        """Pass on the oldest held reply; False if none was held."""
        if not self.held:
            return False
        delivery, reply = self.held.pop(0)
        if self._receive is not None:
            delivery.passed_on += 1
            await self._receive(delivery.command, reply)
        return True

    async def close(self) -> None:
        # A held reply dies with the coordinator it was meant for, as on a real network.
        self.held.clear()
        self._receive = None
        await super().close()


def _duration(ms: int) -> str:
    return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms}ms"


async def run_schedule(
    saga: Saga,
    world: object,
    schedule: Schedule,
    *,
    input: JsonObject,
    saga_id: str,
    max_advances: int,
    signals: Mapping[str, JsonObject] | None = None,
) -> Run:
    """Run ``saga`` once in ``world`` with ``schedule``'s faults; the Run says what happened.

    ``signals`` (event name -> payload) are delivered once each, with the id
    ``explored-<event>``, right after the saga starts (kept by it until a wait step takes
    them)."""
    run = Run(schedule=schedule, world=world)
    participants = participants_of(world)

    def witness(delivery: Delivery, reply: Reply) -> None:
        command = delivery.command
        run.effects[(command.step, command.direction)] += 1
        # The transport numbers deliveries in sending order, as the trace lists commands.
        run.commands[delivery.index].recorded.append(reply)

    for participant in participants:
        if isinstance(participant.store, WitnessStore):
            raise TypeError(
                f"participant {participant.name!r} was used by an earlier run: make_world must"
                " build fresh participants (and business state) every time it is called"
            )
        participant.store = WitnessStore(participant.store, witness)
    planned = {injection.point: injection.fault for injection in schedule}
    counts: Counter[tuple[str, Direction, int]] = Counter()
    handed: set[tuple[str, Direction]] = set()
    restart = False

    def intercept(command: Command) -> Fault:
        nonlocal restart
        triple = (command.step, command.direction, command.attempt)
        counts[triple] += 1
        point = Point(*triple, occurrence=counts[triple])
        kind = planned.get(point)
        fault = Fault.DELIVER if kind is None else _TRANSPORT_FAULT[kind]
        key = (command.step, command.direction)
        fresh = key not in handed and (command.step, Direction.COMPENSATE) not in handed
        if fault not in (Fault.LOSE_COMMAND, Fault.FAIL, Fault.REJECT):
            handed.add(key)
        restart = restart or kind is FaultKind.RESTART
        item = Sent(point=point, command=command, injected=kind, fresh=fresh)
        # This command is about to become delivery number len(run.commands).
        for index in transport.in_flight():
            run.commands[index].overlapped = item.overlapped = True
        if kind is FaultKind.DELAY_REPLY:
            transport.delayed.add(len(run.commands))
        run.trace.append(item)
        run.commands.append(item)
        return fault

    log, clock = InMemorySagaLog(), FakeClock()
    transport = _ReorderingTransport(participants, intercept)

    def open_coordinator() -> Coordinator:
        return Coordinator(log, transport, sagas=[saga], clock=clock)

    coordinator = open_coordinator()
    await coordinator.open()
    try:
        await coordinator.start(saga, input, saga_id=saga_id)
        for event, payload in (signals or {}).items():
            run.trace.append(Note(f"the outside event {event!r} arrives"))
            await coordinator.signal(
                saga_id, event, event_id=f"explored-{event}", payload=payload, sender="explore"
            )
        advances = 0
        waited: tuple[Note, int] | None = None
        while True:
            if not await _quiesce(transport, log, saga_id):
                run.unsettled = "the coordinator kept writing or sending without time passing"
                break
            if waited is not None:
                note, seq = waited
                note.text += _why(await log.events(saga_id, after_seq=seq))
                waited = None
            if restart:
                restart = False
                run.trace.append(Note("the coordinator restarts"))
                await coordinator.close()
                coordinator = open_coordinator()
                await coordinator.open()
                continue
            state = engine.replay(await log.events(saga_id))
            if state.is_final or state.stuck is not None:
                break
            now = clock.now_ms()
            decision = engine.decide(saga, state, now)
            wake = now if decision.events else decision.wake_at_ms
            if wake is None:
                run.unsettled = f"the saga is {state.status.value} and waits for nothing"
                break
            if wake <= now and not decision.events:
                run.unsettled = (
                    f"the saga is {state.status.value} and asks to be woken at"
                    f" +{_duration(wake - state.started_ms)}, which has passed, yet has nothing"
                    " to do then: its timer would fire again and again (an engine bug)"
                )
                break
            if advances >= max_advances:
                run.unsettled = (
                    f"the saga is still {state.status.value} after {max_advances} timer"
                    f" wake-ups ({_duration(now - state.started_ms)} of fake time)"
                )
                break
            advances += 1
            delta = max(wake - now, 1)
            waited = (Note(f"{_duration(delta)} pass"), state.seq)
            run.trace.append(waited[0])
            await clock.advance(delta)
        run.events = await log.events(saga_id)
        run.result = await coordinator.get(saga_id)
    finally:
        await coordinator.close()
        for item, delivery in zip(run.commands, transport.deliveries, strict=True):
            item.delivery = delivery
            item.held = delivery.index in transport.delayed
    return run


def _why(events: list[Event]) -> str:
    """What the time that passed set off, from the events it led to."""
    for payload in map(payload_of, events):
        match payload:
            case StepFailed() if (payload.error or {}).get("code") == "timeout":
                where = f"{payload.step} {payload.direction}"
                return f": {where} attempt {payload.attempt} times out"
            case StepSent():
                return f": the back-off of {payload.step} {payload.direction} ends"
            case CompensationStarted():
                return f": {payload.reason}"
    return ""


async def _quiesce(transport: _ReorderingTransport, log: InMemorySagaLog, saga_id: str) -> bool:
    """Let the coordinator and participants run until nothing new happens (False: never).

    A reply held back is passed on when all else is quiet, one at a time, before any time
    passes (so its step does not time out: it is late, not lost)."""
    last: tuple[int, int] | None = None
    calm = 0
    for _ in range(_MAX_SPINS):
        if transport.pending:
            await transport.settle()
            calm = 0
            continue
        record = await log.get(saga_id)
        mark = (len(transport.deliveries), 0 if record is None else record.last_seq)
        if mark == last:
            calm += 1
            if calm >= _CALM_SPINS:
                if not await transport.release():
                    return True
                last, calm = None, 0
        else:
            last, calm = mark, 0
        await asyncio.sleep(0)
    return False
