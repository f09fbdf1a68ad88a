"""A deterministic simulation of the engine against idempotent participants, for the tests.

The network and participants follow a schedule of choices: each command succeeds, is
rejected, fails before or after taking effect, is lost, or its reply is duplicated; and the
coordinator may restart (replay its log) before any input. Everything is pure and in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from saga import engine
from saga.definition import Saga
from saga.events import Event, EventType, NewEvent
from saga.protocol import Command, Direction, Reply


class Net(StrEnum):
    OK = "ok"
    REJECT = "reject"
    FAIL_BEFORE = "fail_before"
    """The handler fails before acting: a failed reply."""
    LOST_REPLY = "lost_reply"
    """The handler acts; the reply is lost (the coordinator times out)."""
    LOST_COMMAND = "lost_command"
    DUPLICATE_REPLY = "duplicate_reply"


@dataclass
class Participants:
    """Idempotent, fencing participants: what the SDK promises, modelled in a few lines."""

    records: dict[tuple[str, Direction], Reply] = field(default_factory=dict)
    effects: list[tuple[str, Direction]] = field(default_factory=list)
    handler_runs: dict[tuple[str, Direction], int] = field(default_factory=dict)

    def handle(self, command: Command, net: Net) -> Reply | None:
        key = (command.step, command.direction)
        if net is Net.LOST_COMMAND:
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
        if net is Net.FAIL_BEFORE:
            return Reply.failed("boom", "transient")
        self.handler_runs[key] = self.handler_runs.get(key, 0) + 1
        if net is Net.REJECT and command.direction is Direction.FORWARD:
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
            if not outbox and (pending := engine.in_flight(state)) is not None:
                outbox = [pending]
            continue
        replies: list[tuple[Command, Reply]] = []
        for command in outbox:
            sent.append(command)
            options = [n.value for n in Net]
            net = Net(choose(f"net:{command.step}:{command.direction}", options))
            reply = participants.handle(command, net)
            if reply is None or net is Net.LOST_REPLY:
                continue
            replies.append((command, reply))
            if net is Net.DUPLICATE_REPLY:
                replies.append((command, reply))
        outbox = []
        events: list[NewEvent] = []
        for command, reply in replies:
            events.extend(engine.on_reply(state, command, reply, now))
        decision = engine.decide(defn, state, now)
        store(events + decision.events)
        outbox = list(decision.commands)
        if not outbox and not replies and decision.wake_at_ms is not None:
            now = max(now, decision.wake_at_ms)
            decision = engine.decide(defn, state, now)
            store(decision.events)
            outbox = list(decision.commands)
    return Run(log=log, state=state, participants=participants, sent=sent, restarts=restarts)
