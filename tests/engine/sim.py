"""A deterministic simulation of the engine against idempotent participants, for the tests.

The network and participants follow a schedule of choices from ``saga.testing``'s public fault
model (``Fault``, the in-memory transport's): each command is delivered, rejected, fails
before taking effect, is lost, is delivered twice, or its reply is lost or duplicated; and the
coordinator may restart (replay its log) before any input. Everything is pure and in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from saga import engine
from saga.definition import Saga
from saga.events import Event, EventType, NewEvent
from saga.protocol import Command, Direction, Reply
from saga.testing import Fault

FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f is not Fault.EFFECT_THEN_FAIL)
"""What the simulated network may do to each command. EFFECT_THEN_FAIL is left out: it runs
a handler whose effect is not recorded, so its retry acts again (the participant SDK's
documented limit for non-transactional handlers), and that is the explorer's to check with
real participants (``saga.testing.explore``), not the engine's."""


@dataclass
class Participants:
    """Idempotent, fencing participants: what the SDK promises, modelled in a few lines."""

    records: dict[tuple[str, Direction], Reply] = field(default_factory=dict)
    effects: list[tuple[str, Direction]] = field(default_factory=list)
    handler_runs: dict[tuple[str, Direction], int] = field(default_factory=dict)

    def handle(self, command: Command, fault: Fault) -> Reply | None:
        """The participant's reply to one hand-over of ``command``; None if it never got it.

        As in the SDK, a key already recorded is answered from its record, whatever the fault:
        a participant that acted never says no afterwards.
        """
        key = (command.step, command.direction)
        if fault is Fault.LOSE_COMMAND:
            return None
        if key in self.records:
            return self.records[key]
        if command.direction is Direction.FORWARD and (command.step, Direction.COMPENSATE) in (
            self.records
        ):
            reply = Reply.rejected("fenced", "compensated before it ran")
            self.records[key] = reply
            return reply
        if command.direction is Direction.COMPENSATE and (command.step, Direction.FORWARD) not in (
            self.records
        ):
            reply = Reply.succeeded({"fenced": True})
            self.records[key] = reply
            return reply
        if fault is Fault.FAIL:
            return Reply.failed("boom", "transient")
        self.handler_runs[key] = self.handler_runs.get(key, 0) + 1
        if fault is Fault.REJECT and command.direction is Direction.FORWARD:
            reply = Reply.rejected("no", "business says no")
        else:
            reply = Reply.succeeded({"step": command.step})
            self.effects.append(key)
        self.records[key] = reply
        return reply


@dataclass
class Run:
    log: list[Event]
    state: engine.SagaState
    participants: Participants
    sent: list[Command]
    restarts: int


Chooser = Callable[[str, list[str]], str]
"""Given a label and options, pick one (hypothesis draws, or a fixed script)."""


def simulate(
    defn: Saga, choose: Chooser, *, max_inputs: int = 400, start_ms: int = 1_000_000
) -> Run:
    now = start_ms
    saga_id = "s1"
    log: list[Event] = []

    def store(events: list[NewEvent]) -> None:
        for event in events:
            log.append(
                Event(
                    saga_id=saga_id,
                    seq=len(log) + 1,
                    type=event.type,
                    data=event.data,
                    at_ms=event.at_ms,
                )
            )

    started = NewEvent(
        type=EventType.SAGA_STARTED,
        data={
            "name": defn.name,
            "version": defn.version,
            "input": {"n": 1},
            "deadline_at_ms": None,
        },
        at_ms=now,
    )
    store([started])
    state = engine.new_state(saga_id, started)
    participants = Participants()
    sent: list[Command] = []
    restarts = 0
    decision = engine.decide(defn, state, now)
    store(decision.events)
    outbox = list(decision.commands)
    for _ in range(max_inputs):
        if state.is_final or state.stuck is not None:
            break
        if choose("restart", ["no", "no", "no", "yes"]) == "yes":
            restarts += 1
            state = engine.replay(log)
            decision = engine.decide(defn, state, now)
            store(decision.events)
            outbox = list(decision.commands)
            if not outbox and (pending := next(iter(engine.in_flight(state)), None)) is not None:
                outbox = [pending]
            continue
        replies: list[tuple[Command, Reply]] = []
        for command in outbox:
            sent.append(command)
            options = [f.value for f in FAULTS]
            fault = Fault(choose(f"net:{command.step}:{command.direction}", options))
            handed = 2 if fault is Fault.DUPLICATE_COMMAND else 1
            answers = [participants.handle(command, fault) for _ in range(handed)]
            if fault is Fault.LOSE_REPLY:
                continue
            for reply in answers:
                if reply is None:
                    continue
                replies.append((command, reply))
                if fault is Fault.DUPLICATE_REPLY:
                    replies.append((command, reply))
        outbox = []
        events: list[NewEvent] = []
        for command, reply in replies:
            events.extend(engine.on_reply(defn, state, command, reply, now))
        decision = engine.decide(defn, state, now)
        store(events + decision.events)
        outbox = list(decision.commands)
        if not outbox and not replies and decision.wake_at_ms is not None:
            now = max(now, decision.wake_at_ms)
            decision = engine.decide(defn, state, now)
            store(decision.events)
            outbox = list(decision.commands)
    return Run(log=log, state=state, participants=participants, sent=sent, restarts=restarts)
