"""A saga's timeline, from its events: each step and compensation with its attempts, and audits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from saga.definition import StepKind
from saga.engine.payloads import (
    Action,
    OperatorAction,
    Payload,
    RetryScheduled,
    SagaResumed,
    SagaStuck,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    payload_of,
)
from saga.errors import StateError
from saga.events import Event, EventType, JsonObject
from saga.protocol import Direction


class AttemptOutcome(StrEnum):
    """How one attempt ended (or that it has not yet), as the timeline shows it.

    Not ``saga.Outcome``, a reply's outcome on the wire: an attempt can also still be in
    flight. The values are shown in the API's JSON and never change.
    """

    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    """A business "no": the step had no effect."""
    FAILED = "failed"
    """Outcome unknown (timeout, transient error): retried, or compensated if it never resolves."""


@dataclass(kw_only=True)
class Attempt:
    """One sending of a command and what came of it."""

    attempt: int
    sent_ms: int
    outcome: AttemptOutcome = AttemptOutcome.IN_FLIGHT
    finished_ms: int | None = None
    error: JsonObject | None = None
    retry_at_ms: int | None = None
    """When the next attempt was scheduled, if one was."""


@dataclass(kw_only=True)
class ByHand:
    """An operator marked this step (skip, force forward) or compensation (resolve) done."""

    action: str
    actor: str
    reason: str
    at_ms: int


@dataclass(kw_only=True)
class Entry:
    """A step's forward run, or its compensation: every attempt, in order."""

    step: str
    direction: Direction
    service: str
    command: str
    kind: str = StepKind.COMPENSATABLE.value
    """The step kind as recorded (a string: the timeline shows whatever the log holds)."""
    attempts: list[Attempt] = field(default_factory=list)
    by_hand: ByHand | None = None
    stuck: bool = False
    """The saga got stuck on this entry (its retry policy was exhausted)."""

    @property
    def state(self) -> str:
        """in_flight, succeeded, rejected, failed, waiting, stuck, or done_by_hand."""
        if self.by_hand is not None:
            return "done_by_hand"
        if self.stuck:
            return "stuck"
        last = self.attempts[-1]
        if last.outcome is AttemptOutcome.FAILED and last.retry_at_ms is not None:
            return "waiting"
        return last.outcome.value


@dataclass(kw_only=True)
class OperatorEntry:
    """An operator action as audited in the log: who, when, why, and on which step."""

    at_ms: int
    action: str
    actor: str
    reason: str
    step: str | None = None
    direction: str | None = None


@dataclass(kw_only=True)
class Mark:
    """A saga-level moment: started, compensation_started, stuck, resumed, completed,
    compensated, with its reason where there is one."""

    at_ms: int
    kind: str
    reason: str | None = None


@dataclass(kw_only=True)
class Timeline:
    """Steps forward in the order they ran, compensations in the order they ran."""

    steps: list[Entry] = field(default_factory=list)
    compensations: list[Entry] = field(default_factory=list)
    operator_actions: list[OperatorEntry] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


_MARKS = {
    EventType.SAGA_STARTED: "started",
    EventType.COMPENSATION_STARTED: "compensation_started",
    EventType.SAGA_STUCK: "stuck",
    EventType.SAGA_RESUMED: "resumed",
    EventType.SAGA_COMPLETED: "completed",
    EventType.SAGA_COMPENSATED: "compensated",
}
_OUTCOMES = {
    EventType.STEP_SUCCEEDED: AttemptOutcome.SUCCEEDED,
    EventType.STEP_REJECTED: AttemptOutcome.REJECTED,
    EventType.STEP_FAILED: AttemptOutcome.FAILED,
}


def _readable(events: Iterable[Event]) -> Iterator[tuple[Event, Payload]]:
    """Each event with its payload; one that cannot be read is left out of the timeline
    (it shows what it can of a damaged log, where ``replay`` would refuse it)."""
    for event in events:
        try:
            yield event, payload_of(event)
        except (KeyError, TypeError, ValueError, StateError):
            continue


def timeline(events: Iterable[Event]) -> Timeline:
    """Fold a saga's events (in seq order) into its timeline. Pure; unknown events are skipped."""
    found = Timeline()
    entries: dict[tuple[str, Direction], Entry] = {}
    for event, payload in _readable(events):
        if event.type in _MARKS:
            reason = getattr(payload, "reason", None)
            found.marks.append(Mark(at_ms=event.at_ms, kind=_MARKS[event.type], reason=reason))
        match payload:
            case StepSent():
                key = (payload.step, payload.direction)
                entry = entries.get(key)
                if entry is None:
                    entry = Entry(
                        step=payload.step,
                        direction=payload.direction,
                        service=payload.service,
                        command=payload.command,
                        kind=payload.kind.value,
                    )
                    entries[key] = entry
                    forward = payload.direction is Direction.FORWARD
                    (found.steps if forward else found.compensations).append(entry)
                entry.stuck = False
                entry.attempts.append(Attempt(attempt=payload.attempt, sent_ms=event.at_ms))
            case StepSucceeded() | StepRejected() | StepFailed():
                entry = entries.get((payload.step, payload.direction))
                if entry is not None and entry.attempts:
                    last = entry.attempts[-1]
                    last.outcome = _OUTCOMES[event.type]
                    last.finished_ms = event.at_ms
                    last.error = None if isinstance(payload, StepSucceeded) else payload.error
            case RetryScheduled():
                entry = entries.get((payload.step, payload.direction))
                if entry is not None and entry.attempts:
                    entry.attempts[-1].retry_at_ms = payload.retry_at_ms
            case SagaStuck():
                entry = None
                if payload.step is not None and payload.direction is not None:
                    entry = entries.get((payload.step, payload.direction))
                if entry is not None:
                    entry.stuck = True
            case SagaResumed():
                for entry in entries.values():
                    entry.stuck = False
            case OperatorAction():
                _operator(found, entries, payload, event.at_ms)
    return found


def _operator(
    found: Timeline,
    entries: dict[tuple[str, Direction], Entry],
    done: OperatorAction,
    at_ms: int,
) -> None:
    action = done.action.value
    audit = OperatorEntry(
        at_ms=at_ms,
        action=action,
        actor=done.actor,
        reason=done.reason,
        step=done.step,
        direction=None if done.direction is None else done.direction.value,
    )
    found.operator_actions.append(audit)
    if done.step is None or done.direction is None:
        return
    entry = entries.get((done.step, done.direction))
    if entry is None:
        return
    entry.stuck = False
    unfinished = not entry.attempts or entry.attempts[-1].outcome is not AttemptOutcome.SUCCEEDED
    # force_forward takes an unfinished pivot as done; on a failing step after the pivot it
    # retries without limit instead, and the timeline shows the later attempts.
    forced = done.action is Action.FORCE_FORWARD and entry.kind == StepKind.PIVOT
    if unfinished and (done.action in (Action.RESOLVE, Action.SKIP) or forced):
        entry.by_hand = ByHand(
            action=action, actor=audit.actor, reason=audit.reason, at_ms=audit.at_ms
        )
