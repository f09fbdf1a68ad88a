"""Property tests of the decision logic over random failure schedules and restarts."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga import engine
from saga.definition import RetryPolicy, Saga, Step, StepKind
from saga.events import EventType, SagaStatus
from saga.protocol import Direction
from tests.engine.sim import Run, simulate

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=10), max_attempts=3)


@st.composite
def sagas(draw: st.DrawFn) -> Saga:
    count = draw(st.integers(min_value=1, max_value=5))
    pivot_at = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=count - 1)))
    attempts = draw(st.integers(min_value=1, max_value=3))
    comp_attempts = draw(st.integers(min_value=1, max_value=4))
    retriable_attempts = draw(st.sampled_from([None, 2, 4]))
    steps = []
    for i in range(count):
        if pivot_at is None or i < pivot_at:
            kind = StepKind.COMPENSATABLE
        elif i == pivot_at:
            kind = StepKind.PIVOT
        else:
            kind = StepKind.RETRIABLE
        steps.append(
            Step(
                name=f"s{i}",
                service="svc",
                command=f"do{i}",
                compensation=f"undo{i}" if kind is StepKind.COMPENSATABLE else None,
                kind=kind,
                retry=RetryPolicy(
                    initial_interval=timedelta(milliseconds=10),
                    max_attempts=retriable_attempts if kind is StepKind.RETRIABLE else attempts,
                ),
                compensation_retry=RetryPolicy(
                    initial_interval=timedelta(milliseconds=10), max_attempts=comp_attempts
                ),
                timeout=timedelta(seconds=1),
            )
        )
    return Saga(name="prop", steps=tuple(steps))


def _check_invariants(defn: Saga, run: Run) -> None:
    state = run.state
    log = run.log
    assert state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.STUCK), (
        f"saga did not end: {state.status}"
    )
    types = [e.type for e in log]
    assert not (EventType.SAGA_COMPLETED in types and EventType.SAGA_COMPENSATED in types)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))

    # Write-ahead: every command the coordinator sent was recorded as step_sent before.
    recorded = {
        (e.data["step"], e.data["direction"], e.data["attempt"])
        for e in log
        if e.type is EventType.STEP_SENT
    }
    for command in run.sent:
        assert (command.step, command.direction.value, command.attempt) in recorded

    # No compensation before its step was sent.
    forward_sent: set[str] = set()
    for event in log:
        if event.type is EventType.STEP_SENT:
            if event.data["direction"] == Direction.FORWARD:
                forward_sent.add(event.data["step"])
            else:
                assert event.data["step"] in forward_sent

    effects = run.participants.effects
    assert len(effects) == len(set(effects)), f"an effect happened twice: {effects}"
    runs = run.participants.handler_runs
    assert all(n == 1 for n in runs.values()), f"a handler ran twice: {runs}"

    forward_effects = [s for s, d in effects if d is Direction.FORWARD]
    comp_effects = [s for s, d in effects if d is Direction.COMPENSATE]
    order = [s.name for s in defn.steps]
    if state.status is SagaStatus.COMPLETED:
        assert forward_effects == order
        assert comp_effects == []
    if state.status is SagaStatus.COMPENSATED:
        assert not state.pivot_passed
        sent = [
            s.name
            for s in defn.steps
            if s.kind is StepKind.COMPENSATABLE
            and state.steps.get(s.name) is not None
            and state.steps[s.name].sent
            and not state.steps[s.name].rejected
        ]
        assert state.plan == list(reversed(sent))
        compensated = [
            e.data["step"]
            for e in log
            if e.type is EventType.STEP_SUCCEEDED and e.data["direction"] == Direction.COMPENSATE
        ]
        assert compensated == state.plan
        # Every effect that happened was undone, in reverse order of the effects.
        undone_effects = [s for s in forward_effects if s in sent]
        assert comp_effects == list(reversed(undone_effects))
        assert set(forward_effects) <= set(sent)
    if state.status is SagaStatus.STUCK:
        assert state.stuck is not None
        assert state.stuck["reason"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(defn=sagas(), data=st.data())
def test_every_schedule_ends_completed_compensated_or_stuck(
    defn: Saga, data: st.DataObject
) -> None:
    def choose(label: str, options: list[str]) -> str:
        return data.draw(st.sampled_from(options), label=label)

    run = simulate(defn, choose)
    _check_invariants(defn, run)


@settings(max_examples=200, deadline=None)
@given(defn=sagas(), rng=st.randoms(use_true_random=False))
def test_replaying_the_log_gives_the_same_state(defn: Saga, rng: random.Random) -> None:
    """The state folded from the stored log equals the live state, and deciding again on it
    adds nothing: the next action is a pure function of (definition, log, time)."""

    def choose(label: str, options: list[str]) -> str:
        return "no" if label == "restart" else rng.choice(options)

    run = simulate(defn, choose)
    _check_invariants(defn, run)
    final = engine.replay(run.log)
    assert final.status == run.state.status
    assert final.steps == run.state.steps
    again = engine.decide(defn, final, run.log[-1].at_ms)
    assert again.events == []
    assert again.commands == []
