"""The engine on graphs, long-running steps and wait steps: pure, no I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga import engine
from saga.definition import Saga, Step, StepKind, Wait
from saga.engine.payloads import SagaStarted, new_event
from saga.errors import StateError
from saga.events import Event, EventType, NewEvent, SagaStatus
from saga.protocol import Command, Direction, Reply

T0 = 1_000_000


def comp(name: str, after: tuple[str, ...] | None = None, **kw: object) -> Step:
    return Step(
        name=name,
        service=name,
        command="do",
        compensation="undo",
        after=after,
        **kw,  # type: ignore[arg-type]
    )


TRIP = Saga(
    name="trip",
    steps=(
        comp("flight", after=()),
        comp("hotel", after=()),
        comp("car", after=("flight",)),
        Wait(name="approval", event="approved", timeout=timedelta(hours=1),
             after=("hotel", "car")),
        Step(name="pay", service="pay", command="charge", kind=StepKind.PIVOT),
        Step(name="mail", service="mail", command="send", kind=StepKind.RETRIABLE),
    ),
)  # fmt: skip


class Run:
    """One saga driven by hand: the log is every event made, replayable at any point."""

    def __init__(self, defn: Saga) -> None:
        self.defn = defn
        started = new_event(SagaStarted(name=defn.name, version=defn.version), T0)
        self.state = engine.new_state("s1", started)
        self.log: list[NewEvent] = [started]
        self.sent: list[Command] = []

    def decide(self, now: int) -> list[Command]:
        decision = engine.decide(self.defn, self.state, now)
        self.log.extend(decision.events)
        self.sent.extend(decision.commands)
        return decision.commands

    def reply(self, command: Command, reply: Reply, now: int) -> list[Command]:
        self.log.extend(engine.on_reply(self.defn, self.state, command, reply, now))
        return self.decide(now)

    def replayed(self) -> engine.SagaState:
        return engine.replay(
            Event(saga_id="s1", seq=i, type=e.type, data=e.data, at_ms=e.at_ms, format=e.format)
            for i, e in enumerate(self.log, start=1)
        )

    def types(self) -> list[EventType]:
        return [e.type for e in self.log]


def keyed(commands: list[Command]) -> dict[tuple[str, Direction], Command]:
    return {(c.step, c.direction): c for c in commands}


def test_independent_steps_go_out_together_and_joins_wait_for_all() -> None:
    run = Run(TRIP)
    first = keyed(run.decide(T0))
    assert set(first) == {("flight", Direction.FORWARD), ("hotel", Direction.FORWARD)}
    car = run.reply(first["flight", Direction.FORWARD], Reply.succeeded({"seat": "3A"}), T0 + 1)
    assert [(c.step, c.direction) for c in car] == [("car", Direction.FORWARD)]
    assert run.reply(car[0], Reply.succeeded(), T0 + 2) == []  # approval still waits on hotel
    assert run.reply(first["hotel", Direction.FORWARD], Reply.succeeded(), T0 + 3) == []
    assert run.types()[-1] is EventType.STEP_WAITING  # approval: sends nothing
    assert run.state.pointers["approval"].phase is engine.Phase.AWAITING
    # Replay gives the same state: branches and all.
    assert run.replayed().pointers.keys() == run.state.pointers.keys()


def test_a_failed_branch_awaits_its_sibling_then_compensates_in_reverse_dependency_order() -> None:
    run = Run(TRIP)
    first = keyed(run.decide(T0))
    car = run.reply(first["flight", Direction.FORWARD], Reply.succeeded(), T0 + 1)[0]
    # hotel says no while car is in flight: nothing new starts, car is awaited.
    after_no = run.reply(first["hotel", Direction.FORWARD], Reply.rejected("full", "no"), T0 + 2)
    assert run.state.status is SagaStatus.COMPENSATING
    assert run.state.plan == ["car", "flight"]  # hotel was rejected: nothing to undo
    assert after_no == []  # flight waits for car's compensation, car for its own outcome
    undo_car = run.reply(car, Reply.succeeded(), T0 + 3)
    assert [(c.step, c.direction) for c in undo_car] == [("car", Direction.COMPENSATE)]
    undo_flight = run.reply(undo_car[0], Reply.succeeded(), T0 + 4)
    assert [(c.step, c.direction) for c in undo_flight] == [("flight", Direction.COMPENSATE)]
    run.reply(undo_flight[0], Reply.succeeded(), T0 + 5)
    assert run.state.status is SagaStatus.COMPENSATED
    assert run.state.compensated_order == ["car", "flight"]
    assert run.replayed().status is SagaStatus.COMPENSATED


def test_a_sibling_that_times_out_is_compensated_as_unknown() -> None:
    run = Run(TRIP)
    first = keyed(run.decide(T0))
    run.reply(first["hotel", Direction.FORWARD], Reply.rejected("full", "no"), T0 + 1)
    assert run.decide(T0 + 9_999) == []  # flight (10 s timeout) is still awaited
    undo = run.decide(T0 + 10_000)
    assert [(c.step, c.direction) for c in undo] == [("flight", Direction.COMPENSATE)]


def test_independent_compensations_run_at_the_same_time() -> None:
    saga = Saga(
        name="par",
        steps=(
            comp("a", after=()),
            comp("b", after=()),
            comp("c", after=("a", "b")),
        ),
    )
    run = Run(saga)
    first = keyed(run.decide(T0))
    run.reply(first["a", Direction.FORWARD], Reply.succeeded(), T0)
    c = run.reply(first["b", Direction.FORWARD], Reply.succeeded(), T0)
    undo = run.reply(c[0], Reply.rejected("no", "no"), T0 + 1)
    assert {(x.step, x.direction) for x in undo} == {
        ("a", Direction.COMPENSATE),
        ("b", Direction.COMPENSATE),
    }


def long_saga() -> Saga:
    return Saga(
        name="ship",
        steps=(
            comp("reserve"),
            comp("carrier", completion_timeout=timedelta(hours=2),
                 poll_every=timedelta(minutes=1)),
            Step(name="charge", service="pay", command="charge", kind=StepKind.PIVOT),
        ),
    )  # fmt: skip


def test_an_accepted_step_waits_for_its_completion_polls_and_heartbeats_extend_it() -> None:
    run = Run(long_saga())
    (reserve,) = run.decide(T0)
    (carrier,) = run.reply(reserve, Reply.succeeded(), T0)
    assert run.reply(carrier, Reply.accepted("tok"), T0 + 5) == []
    pointer = run.state.pointers["carrier"]
    assert pointer.phase is engine.Phase.ACCEPTED
    assert pointer.timeout_at_ms == T0 + 5 + 7_200_000
    assert run.types()[-1] is EventType.STEP_ACCEPTED
    # No timeout at the step's 10 s: the completion deadline counts. A poll goes out each minute.
    assert run.decide(T0 + 60_000) == []
    (poll,) = run.decide(T0 + 60_005)
    assert (poll.step, poll.attempt) == ("carrier", 1)
    logged = len(run.log)
    assert run.reply(poll, Reply.accepted("tok"), T0 + 60_010) == []  # still under way
    assert len(run.log) == logged  # a poll's answer with nothing new writes nothing
    run.reply(poll, Reply.accepted("tok", heartbeats=1), T0 + 3_600_000)
    assert run.state.pointers["carrier"].timeout_at_ms == T0 + 3_600_000 + 7_200_000
    (charge,) = run.reply(poll, Reply.succeeded({"tracking": "X1"}), T0 + 3_700_000)
    assert charge.step == "charge"
    assert run.state.results()["carrier"] == {"tracking": "X1"}
    assert engine.in_flight(run.replayed())[0].step == "charge"


def test_an_accepted_step_past_its_deadline_is_unknown_and_retried_then_compensated() -> None:
    run = Run(long_saga())
    (reserve,) = run.decide(T0)
    (carrier,) = run.reply(reserve, Reply.succeeded(), T0)
    run.reply(carrier, Reply.accepted("tok"), T0)
    run.decide(T0 + 7_200_000)
    failed = [e for e in run.log if e.type is EventType.STEP_FAILED]
    assert failed[-1].data["error"]["code"] == "completion_timeout"


def test_compensating_an_accepted_step_does_not_wait_for_its_completion() -> None:
    saga = Saga(
        name="acc",
        steps=(
            comp("carrier", after=(), completion_timeout=timedelta(hours=2)),
            comp("other", after=()),
        ),
    )
    run = Run(saga)
    first = keyed(run.decide(T0))
    run.reply(first["carrier", Direction.FORWARD], Reply.accepted("tok"), T0)
    undo = run.reply(first["other", Direction.FORWARD], Reply.rejected("no", "no"), T0 + 1)
    assert [(c.step, c.direction) for c in undo] == [("carrier", Direction.COMPENSATE)]
    # Its completion arriving now is refused: the step has moved on to its compensation.
    assert engine.on_reply(saga, run.state, first["carrier", Direction.FORWARD],
                           Reply.succeeded(), T0 + 2) == []  # fmt: skip


def test_accepted_from_a_step_that_is_not_long_running_fails_for_good() -> None:
    run = Run(Saga(name="plain", steps=(comp("a"),)))
    (a,) = run.decide(T0)
    run.reply(a, Reply.accepted("tok"), T0)
    failed = next(e for e in run.log if e.type is EventType.STEP_FAILED)
    assert failed.data["error"]["code"] == "unexpected_accept"
    assert failed.data["final"] is True
    assert run.state.status is SagaStatus.COMPENSATING


def test_an_event_that_came_early_is_used_when_the_wait_is_reached() -> None:
    run = Run(TRIP)
    first = keyed(run.decide(T0))
    events = engine.on_signal(TRIP, run.state, "approved", event_id="m-1",
                              payload={"by": "ana"}, sender="ops", now_ms=T0)  # fmt: skip
    run.log.extend(events)
    assert engine.on_signal(TRIP, run.state, "approved", event_id="m-1",
                            payload={"by": "ana"}, sender="ops", now_ms=T0) == []  # fmt: skip
    car = run.reply(first["flight", Direction.FORWARD], Reply.succeeded(), T0)[0]
    run.reply(car, Reply.succeeded(), T0)
    (pay,) = run.reply(first["hotel", Direction.FORWARD], Reply.succeeded(), T0)
    assert pay.step == "pay"
    assert run.state.results()["approval"] == {"by": "ana"}
    assert run.state.signals[0].step == "approval"
    assert run.replayed().signals[0].step == "approval"


def test_events_that_no_step_waits_for_or_that_come_twice_are_refused() -> None:
    run = Run(TRIP)
    run.decide(T0)
    with pytest.raises(StateError, match="no step of saga 'trip' v1 waits for event 'nope'"):
        engine.on_signal(TRIP, run.state, "nope", event_id="1", payload={}, sender="x", now_ms=T0)
    engine.on_signal(TRIP, run.state, "approved", event_id="1", payload={}, sender="x", now_ms=T0)
    with pytest.raises(StateError, match="already received"):
        engine.on_signal(TRIP, run.state, "approved", event_id="2", payload={}, sender="x",
                         now_ms=T0)  # fmt: skip


def test_a_wait_that_times_out_compensates_before_the_pivot_and_is_stuck_after() -> None:
    run = Run(TRIP)
    first = keyed(run.decide(T0))
    car = run.reply(first["flight", Direction.FORWARD], Reply.succeeded(), T0)[0]
    run.reply(car, Reply.succeeded(), T0)
    run.reply(first["hotel", Direction.FORWARD], Reply.succeeded(), T0)
    undo = run.decide(T0 + 3_600_000)
    assert run.state.status is SagaStatus.COMPENSATING
    assert "did not arrive" in (run.state.compensation_reason or "")
    assert {c.step for c in undo} == {"car", "hotel"}
    after = Saga(
        name="late",
        steps=(
            Step(name="p", service="p", command="p", kind=StepKind.PIVOT),
            Wait(name="confirm", event="delivered", timeout=timedelta(days=1)),
        ),
    )
    run = Run(after)
    (p,) = run.decide(T0)
    run.reply(p, Reply.succeeded(), T0)
    run.decide(T0 + 86_400_000)
    assert run.state.status is SagaStatus.STUCK
    assert run.state.stuck is not None
    assert run.state.stuck["code"] == "event_timeout"


def test_the_event_a_stuck_wait_missed_resumes_it_when_it_comes() -> None:
    saga = Saga(
        name="late",
        steps=(
            Step(name="p", service="p", command="p", kind=StepKind.PIVOT),
            Wait(name="confirm", event="delivered", timeout=timedelta(days=1)),
        ),
    )
    run = Run(saga)
    (p,) = run.decide(T0)
    run.reply(p, Reply.succeeded(), T0)
    run.decide(T0 + 86_400_000)
    assert run.state.status is SagaStatus.STUCK
    later = T0 + 86_500_000
    events = engine.on_signal(saga, run.state, "delivered", event_id="d-1",
                              payload={"at": "door"}, sender="x", now_ms=later)  # fmt: skip
    run.log.extend(events)
    assert run.types()[-2:] == [EventType.SIGNAL_RECEIVED, EventType.SAGA_RESUMED]
    run.decide(later)
    assert run.state.status is SagaStatus.COMPLETED
    assert run.state.results()["confirm"] == {"at": "door"}
    assert run.replayed().status is SagaStatus.COMPLETED
