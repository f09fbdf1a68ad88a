"""Flow control in the engine: a held command's timeout starts only when it is dispatched."""

from __future__ import annotations

from dataclasses import replace

from saga import engine
from saga.engine import Phase
from saga.events import EventType
from saga.protocol import Direction, Reply
from tests.engine.test_scenarios import T0, begin, three_steps

TIMEOUT_MS = 10_000  # Step's default


def test_a_held_command_never_times_out_and_wakes_nobody() -> None:
    defn = three_steps()
    state = begin(defn)
    (command,) = engine.decide(defn, state, T0).commands
    assert engine.hold(state, command)
    assert state.pointer is not None
    assert state.pointer.timeout_at_ms is None
    assert engine.wake_at(state) is None

    decision = engine.decide(defn, state, T0 + 100 * TIMEOUT_MS)
    assert decision.events == []
    assert decision.commands == []
    assert state.pointer.phase is Phase.IN_FLIGHT


def test_a_dispatched_command_times_out_its_timeout_after_the_send() -> None:
    defn = three_steps()
    state = begin(defn)
    (command,) = engine.decide(defn, state, T0).commands
    engine.hold(state, command)
    sent_at = T0 + 3 * TIMEOUT_MS
    assert engine.dispatched(state, command, sent_at, TIMEOUT_MS)
    assert engine.wake_at(state) == sent_at + TIMEOUT_MS

    assert engine.decide(defn, state, sent_at + TIMEOUT_MS - 1).events == []
    decision = engine.decide(defn, state, sent_at + TIMEOUT_MS)
    assert decision.events[0].type is EventType.STEP_FAILED
    assert decision.events[0].data["error"]["code"] == "timeout"


def test_hold_and_dispatch_ignore_a_command_the_saga_no_longer_awaits() -> None:
    defn = three_steps()
    state = begin(defn)
    (command,) = engine.decide(defn, state, T0).commands
    logged_timeout = T0 + TIMEOUT_MS
    for other in (
        replace(command, attempt=2),
        replace(command, step="credit"),
        replace(command, direction=Direction.COMPENSATE),
    ):
        assert not engine.hold(state, other)
        assert not engine.dispatched(state, other, T0 + 5, TIMEOUT_MS)
    assert state.pointer is not None
    assert state.pointer.timeout_at_ms == logged_timeout

    engine.hold(state, command)
    engine.on_reply(defn, state, command, Reply.succeeded({}), T0 + 1)
    assert not engine.dispatched(state, command, T0 + 2, TIMEOUT_MS)  # answered: drop it


def test_a_cancelled_saga_no_longer_awaits_its_held_command() -> None:
    defn = three_steps()
    state = begin(defn)
    (command,) = engine.decide(defn, state, T0).commands
    engine.hold(state, command)
    engine.on_action(
        defn, state, engine.Action.CANCEL, actor="op", reason="no", now_ms=T0 + 1, result=None
    )
    decision = engine.decide(defn, state, T0 + 1)
    assert [c.command for c in decision.commands] == ["reject"]  # its compensation
    assert not engine.dispatched(state, command, T0 + 2, TIMEOUT_MS)
