"""timeline() of graphs: branches in lanes, accepted and waiting steps, outside events."""

from __future__ import annotations

from datetime import timedelta

from saga.definition import Saga, Step, StepKind, Wait
from saga.engine.payloads import (
    CompensationStarted,
    Payload,
    RetryScheduled,
    SagaCompensated,
    SagaCompleted,
    SagaStarted,
    SignalReceived,
    StepAccepted,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    StepWaiting,
    new_event,
)
from saga.engine.timeline import AttemptOutcome, Timeline, timeline
from saga.events import Event
from saga.protocol import Direction

F, C = Direction.FORWARD, Direction.COMPENSATE


def trip() -> Saga:
    """book -> (flight | hotel | approval) -> pay (pivot) -> mail."""
    return Saga(
        name="trip",
        steps=(
            Step(name="book", service="trips", command="open", compensation="close"),
            Step(
                name="flight",
                service="air",
                command="book",
                compensation="cancel",
                after=("book",),
                completion_timeout=timedelta(hours=4),
            ),
            Step(
                name="hotel",
                service="hotels",
                command="book",
                compensation="cancel",
                after=("book",),
            ),
            Wait(
                name="approval",
                event="manager_approved",
                timeout=timedelta(days=2),
                after=("book",),
            ),
            Step(
                name="pay",
                service="payments",
                command="charge",
                kind=StepKind.PIVOT,
                after=("flight", "hotel", "approval"),
            ),
            Step(name="mail", service="mail", command="send", kind=StepKind.RETRIABLE),
        ),
    )


def events(*payloads: Payload) -> list[Event]:
    """The payloads as stored events, one millisecond apart (seq from 1)."""
    found = []
    for seq, payload in enumerate(payloads, start=1):
        new = new_event(payload, at_ms=1000 + seq)
        found.append(
            Event(saga_id="s", seq=seq, type=new.type, data=new.data, at_ms=new.at_ms, format=2)
        )
    return found


def sent(step: str, direction: Direction = F, attempt: int = 1) -> StepSent:
    return StepSent(
        step=step, direction=direction, attempt=attempt, service="svc", command="cmd",
        payload={}, timeout_at_ms=10**9,
    )  # fmt: skip


def ok(step: str, direction: Direction = F, attempt: int = 1, **result: object) -> StepSucceeded:
    return StepSucceeded(step=step, direction=direction, attempt=attempt, result=dict(result))


def by_step(found: Timeline) -> dict[str, tuple[str, int]]:
    return {e.step: (e.state, e.lane) for e in found.steps}


START = SagaStarted(name="trip", version=1)
BRANCHES = (
    START,
    sent("book"),
    ok("book"),
    sent("flight"),
    sent("hotel"),
    StepWaiting(step="approval", event="manager_approved", timeout_at_ms=99_000),
)


def test_branches_in_flight_together_get_lanes_of_their_own() -> None:
    found = timeline(events(*BRANCHES, ok("hotel")), trip())
    assert by_step(found) == {
        "book": ("succeeded", 0),
        "flight": ("in_flight", 0),  # goes on in the lane of the step it came after
        "hotel": ("succeeded", 1),
        "approval": ("awaiting", 2),
    }
    flight, hotel = found.steps[1:3]
    assert flight.after == ["book"]
    assert hotel.after == ["book"]
    assert (flight.started_ms, flight.ended_ms) == (1004, None)
    assert (hotel.started_ms, hotel.ended_ms) == (1005, 1007)
    assert found.steps[0].ended_ms == 1003


def test_a_step_after_its_branches_reuses_a_free_lane_and_sequences_stay_in_one() -> None:
    found = timeline(
        events(
            *BRANCHES,
            ok("hotel"),
            StepAccepted(step="flight", direction=F, attempt=1, token="t", deadline_at_ms=50_000),
            SignalReceived(event="manager_approved", id="m-1", payload={"by": "ann"}, sender="x"),
            ok("approval", by="ann"),
            ok("flight"),
            sent("pay"),
            ok("pay"),
            sent("mail"),
            ok("mail"),
            SagaCompleted(),
        ),
        trip(),
    )
    lanes = {e.step: e.lane for e in found.steps}
    assert lanes == {"book": 0, "flight": 0, "hotel": 1, "approval": 2, "pay": 0, "mail": 0}
    assert [e.state for e in found.steps] == ["succeeded"] * 6
    pay = next(e for e in found.steps if e.step == "pay")
    assert pay.after == ["flight", "hotel", "approval"]
    flight = found.steps[1]
    [attempt] = flight.attempts
    assert (attempt.outcome, attempt.accepted_ms, attempt.finished_ms) == (
        AttemptOutcome.SUCCEEDED, 1008, 1011,
    )  # fmt: skip


def test_an_accepted_step_shows_its_deadline_and_heartbeats() -> None:
    accepted = StepAccepted(step="flight", direction=F, attempt=1, token="t", deadline_at_ms=5000)
    beat = StepAccepted(
        step="flight", direction=F, attempt=1, token="t", heartbeats=2, deadline_at_ms=9000
    )
    found = timeline(events(*BRANCHES, accepted, beat), trip())
    flight = found.steps[1]
    assert flight.state == "accepted"
    assert flight.ended_ms is None
    [attempt] = flight.attempts
    assert attempt.outcome is AttemptOutcome.ACCEPTED
    assert (attempt.accepted_ms, attempt.deadline_ms, attempt.heartbeats) == (1007, 9000, 2)
    timed_out = StepFailed(
        step="flight", direction=F, attempt=1, error={"code": "completion_timeout"}, final=True
    )
    failed = timeline(events(*BRANCHES, accepted, timed_out), trip()).steps[1]
    assert failed.state == "failed"
    assert failed.ended_ms == 1008
    assert failed.attempts[0].error == {"code": "completion_timeout"}


def test_a_waiting_step_shows_its_event_and_the_signal_that_completed_it() -> None:
    waiting = timeline(events(*BRANCHES), trip())
    approval = waiting.steps[3]
    assert (approval.state, approval.kind, approval.event) == (
        "awaiting", "wait", "manager_approved",
    )  # fmt: skip
    assert (approval.service, approval.command) == ("", "")
    assert approval.attempts[0].deadline_ms == 99_000
    found = timeline(
        events(
            *BRANCHES,
            SignalReceived(event="manager_approved", id="m-1", payload={"by": "ann"}, sender="x"),
            ok("approval", by="ann"),
        ),
        trip(),
    )
    approval = found.steps[3]
    assert (approval.state, approval.signal) == ("succeeded", "m-1")
    [signal] = found.signals
    assert (signal.event, signal.id, signal.sender, signal.step) == (
        "manager_approved", "m-1", "x", "approval",
    )  # fmt: skip
    assert signal.at_ms == 1007


def test_an_early_signal_is_kept_then_taken_by_a_wait_that_never_waited() -> None:
    found = timeline(
        events(
            START,
            SignalReceived(event="manager_approved", id="early", payload={"n": 1}, sender="s"),
            SignalReceived(event="other", id="stray", sender="s"),
            sent("book"),
            ok("book"),
            ok("approval", n=1),  # the kept event is taken at once: no step_waiting first
        ),
        trip(),
    )
    assert [(s.id, s.step) for s in found.signals] == [("early", "approval"), ("stray", None)]
    approval = found.steps[1]
    assert (approval.step, approval.kind, approval.state, approval.signal) == (
        "approval", "wait", "succeeded", "early",
    )  # fmt: skip
    # Without the definition the timeline cannot tell a wait that never waited.
    assert [e.step for e in timeline(events(START, ok("approval"))).steps] == []


def test_a_wait_that_times_out_fails_and_the_branches_are_compensated_in_reverse() -> None:
    found = timeline(
        events(
            *BRANCHES,
            ok("hotel"),
            ok("flight"),
            StepFailed(step="approval", direction=F, attempt=1, error={"code": "event_timeout"}),
            CompensationStarted(reason="no approval", steps=["hotel", "flight", "book"]),
            sent("hotel", C),
            sent("flight", C),
            ok("flight", C),
            StepRejected(step="hotel", direction=C, attempt=1),
            RetryScheduled(step="hotel", direction=C, attempt=2, retry_at_ms=7000),
            sent("hotel", C, attempt=2),
            ok("hotel", C, attempt=2),
            sent("book", C),
            ok("book", C),
            SagaCompensated(compensated=["flight", "hotel", "book"]),
        ),
        trip(),
    )
    assert [(e.step, e.state) for e in found.steps][3] == ("approval", "failed")
    comps = {e.step: (e.state, e.lane, e.after) for e in found.compensations}
    assert comps == {
        "hotel": ("succeeded", 0, []),
        "flight": ("succeeded", 1, []),
        # book's compensation waits for both branches (approval is never compensated).
        "book": ("succeeded", 1, ["flight", "hotel"]),
    }
    hotel = found.compensations[0]
    assert [a.outcome for a in hotel.attempts] == [
        AttemptOutcome.REJECTED, AttemptOutcome.SUCCEEDED,
    ]  # fmt: skip
    assert hotel.ended_ms == hotel.attempts[-1].finished_ms


def test_a_retry_keeps_the_lane_busy_and_a_repeated_signal_is_listed_once() -> None:
    failed = StepFailed(step="hotel", direction=F, attempt=1, error={"code": "timeout"})
    again = RetryScheduled(step="hotel", direction=F, attempt=2, retry_at_ms=5000)
    signal = SignalReceived(event="manager_approved", id="m-1", sender="x")
    found = timeline(
        events(*BRANCHES, failed, again, signal, signal, ok("flight"), sent("hotel", F, 2)),
        trip(),
    )
    hotel = found.steps[2]
    assert (hotel.state, hotel.ended_ms, hotel.lane) == ("in_flight", None, 1)
    assert len(found.signals) == 1
    assert found.signals[0].step is None
