"""A saga's timeline, from its events: each step and compensation with its attempts, and audits.

Branches run side by side: each entry carries when it started and ended, the entries it came
after (from the definition, when it is given) and a ``lane``, so that a view can draw steps
that ran at the same time beside each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from saga.definition import Saga, StepKind, Wait
from saga.engine.payloads import (
    Action,
    OperatorAction,
    Payload,
    RetryScheduled,
    SagaResumed,
    SagaStuck,
    SignalReceived,
    StepAccepted,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    StepWaiting,
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
    ACCEPTED = "accepted"
    """A long-running step's participant accepted the command; it completes it later."""
    AWAITING = "awaiting"
    """A wait step is waiting for its outside event."""


WAIT_KIND = "wait"
"""``Entry.kind`` of a wait step (it sends no command, so it has no ``StepKind``)."""
_OPEN = (AttemptOutcome.IN_FLIGHT, AttemptOutcome.ACCEPTED, AttemptOutcome.AWAITING)


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
    accepted_ms: int | None = None
    """When the participant first answered ``accepted`` (a long-running step)."""
    deadline_ms: int | None = None
    """Accepted: when its outcome counts as unknown (moved on by heartbeats). Awaiting: when
    the wait gives up."""
    heartbeats: int = 0
    """Heartbeats the participant sent for an accepted attempt."""


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
    """The service the command went to ("" for a wait step)."""
    command: str
    """The command's name ("" for a wait step)."""
    kind: str = StepKind.COMPENSATABLE.value
    """The step kind as recorded (a string: the timeline shows whatever the log holds), or
    ``wait`` for a wait step."""
    attempts: list[Attempt] = field(default_factory=list)
    by_hand: ByHand | None = None
    stuck: bool = False
    """The saga got stuck on this entry (its retry policy was exhausted)."""
    event: str | None = None
    """For a wait step: the outside event it waits for."""
    signal: str | None = None
    """For a wait step that succeeded: the id of the outside event that completed it."""
    after: list[str] = field(default_factory=list)
    """The entries (same direction) this one came after: a step's ``after`` in the definition;
    for a compensation, the nearest compensated steps that came after the step. Empty when
    no definition was given."""
    lane: int = 0
    """Its row among the entries of its direction: entries that overlapped in time (branches
    in flight together) have different lanes; a step goes on in its predecessor's lane when
    that one is free."""
    started_seq: int = field(default=0, repr=False)
    """Where its first attempt is in the events (to order entries that share a millisecond)."""
    ended_seq: int | None = field(default=None, repr=False)
    """Where it settled in the events; None while in progress (for the lanes)."""

    @property
    def state(self) -> str:
        """in_flight, accepted, awaiting, succeeded, rejected, failed, waiting (for a retry),
        stuck, or done_by_hand."""
        if self.by_hand is not None:
            return "done_by_hand"
        if self.stuck:
            return "stuck"
        last = self.attempts[-1]
        if last.outcome is AttemptOutcome.FAILED and last.retry_at_ms is not None:
            return "waiting"
        return last.outcome.value

    @property
    def started_ms(self) -> int | None:
        """When its first attempt was sent (or its wait began)."""
        return self.attempts[0].sent_ms if self.attempts else None

    @property
    def ended_ms(self) -> int | None:
        """When it settled: succeeded, rejected, failed with no retry to come, or done by hand;
        None while it is in progress."""
        if self.by_hand is not None:
            return self.by_hand.at_ms
        if not self.attempts:
            return None
        last = self.attempts[-1]
        if last.outcome in _OPEN or last.retry_at_ms is not None:
            return None
        return last.finished_ms


@dataclass(kw_only=True)
class SignalEntry:
    """An outside event the saga received, and the wait step that took it (None: kept)."""

    event: str
    """The event's name (what a wait step waits for)."""
    id: str
    """The sender's id for it (a repeat of an id is the same event, listed once)."""
    sender: str
    """Who delivered it."""
    at_ms: int
    """When it was recorded."""
    payload: JsonObject = field(default_factory=dict)
    """Its data: the result of the wait step that takes it."""
    step: str | None = None
    """The wait step that took it; None while it is kept for a step not reached yet."""


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
    signals: list[SignalEntry] = field(default_factory=list)
    """Outside events received, in the order they arrived."""


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


def timeline(events: Iterable[Event], defn: Saga | None = None) -> Timeline:
    """Fold a saga's events (in seq order) into its timeline. Pure; unknown events are skipped.

    ``defn``, the saga's definition when it is known, gives each entry the entries it came
    after and tells which steps are waits.
    """
    found = Timeline()
    entries: dict[tuple[str, Direction], Entry] = {}
    for seq, (event, payload) in enumerate(_readable(events)):
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
                        started_seq=seq,
                    )
                    _add(found, entries, entry)
                entry.stuck = False
                entry.ended_seq = None
                entry.attempts.append(Attempt(attempt=payload.attempt, sent_ms=event.at_ms))
            case StepWaiting():
                entry = entries.get((payload.step, Direction.FORWARD))
                if entry is None:
                    entry = _wait_entry(payload.step, payload.event, seq)
                    _add(found, entries, entry)
                entry.stuck = False
                entry.ended_seq = None
                entry.attempts.append(
                    Attempt(
                        attempt=payload.attempt,
                        sent_ms=event.at_ms,
                        outcome=AttemptOutcome.AWAITING,
                        deadline_ms=payload.timeout_at_ms,
                    )
                )
            case StepAccepted():
                entry = entries.get((payload.step, payload.direction))
                if entry is not None and entry.attempts:
                    last = entry.attempts[-1]
                    last.outcome = AttemptOutcome.ACCEPTED
                    if last.accepted_ms is None:
                        last.accepted_ms = event.at_ms
                    last.deadline_ms = payload.deadline_at_ms
                    last.heartbeats = payload.heartbeats
            case StepSucceeded() | StepRejected() | StepFailed():
                key = (payload.step, payload.direction)
                entry = entries.get(key)
                if entry is None and _is_wait(defn, payload.step, payload.direction):
                    # A wait that found its event already kept may succeed without waiting.
                    assert defn is not None
                    wait = defn.step(payload.step)
                    assert isinstance(wait, Wait)
                    entry = _wait_entry(payload.step, wait.event, seq)
                    entry.attempts.append(Attempt(attempt=payload.attempt, sent_ms=event.at_ms))
                    _add(found, entries, entry)
                if entry is not None and entry.attempts:
                    last = entry.attempts[-1]
                    last.outcome = _OUTCOMES[event.type]
                    last.finished_ms = event.at_ms
                    last.error = None if isinstance(payload, StepSucceeded) else payload.error
                    entry.ended_seq = seq
                    if isinstance(payload, StepSucceeded) and entry.event is not None:
                        entry.signal = _take_signal(found, entry)
            case RetryScheduled():
                entry = entries.get((payload.step, payload.direction))
                if entry is not None and entry.attempts:
                    entry.attempts[-1].retry_at_ms = payload.retry_at_ms
                    entry.ended_seq = None
            case SignalReceived():
                if not any(s.event == payload.event and s.id == payload.id for s in found.signals):
                    found.signals.append(
                        SignalEntry(
                            event=payload.event,
                            id=payload.id,
                            sender=payload.sender,
                            at_ms=event.at_ms,
                            payload=payload.payload,
                        )
                    )
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
                _operator(found, entries, payload, event.at_ms, seq)
    if defn is not None:
        _link(found, defn)
    _lanes(found.steps)
    _lanes(found.compensations)
    return found


def _add(found: Timeline, entries: dict[tuple[str, Direction], Entry], entry: Entry) -> None:
    entries[(entry.step, entry.direction)] = entry
    forward = entry.direction is Direction.FORWARD
    (found.steps if forward else found.compensations).append(entry)


def _wait_entry(step: str, event: str, seq: int) -> Entry:
    return Entry(
        step=step,
        direction=Direction.FORWARD,
        service="",
        command="",
        kind=WAIT_KIND,
        event=event,
        started_seq=seq,
    )


def _is_wait(defn: Saga | None, step: str, direction: Direction) -> bool:
    if defn is None or direction is not Direction.FORWARD:
        return False
    try:
        return isinstance(defn.step(step), Wait)
    except KeyError:
        return False


def _take_signal(found: Timeline, entry: Entry) -> str | None:
    """The signal a wait step took when it succeeded: the first one for its event that no
    wait took before, as the engine chooses it (``SagaState.signal_for``)."""
    chosen = next((s for s in found.signals if s.event == entry.event and s.step is None), None)
    if chosen is None:
        return None
    chosen.step = entry.step
    return chosen.id


def compensation_after(defn: Saga, step: str, compensated: Iterable[str]) -> list[str]:
    """The compensations that must finish before ``step``'s: the nearest steps after it (in
    the graph) among ``compensated``, looking through steps that are never compensated."""
    among = set(compensated)
    found: list[str] = []
    seen: set[str] = set()
    todo = list(defn.dependents(step))
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if name in among:
            found.append(name)
        else:
            todo.extend(defn.dependents(name))
    return found


def _link(found: Timeline, defn: Saga) -> None:
    """Each entry's ``after``, from the definition (steps it does not know keep none)."""
    known = {step.name for step in defn.steps}
    compensated = [e.step for e in found.compensations if e.step in known]
    for entry in found.steps:
        if entry.step in known:
            entry.after = list(defn.after(entry.step))
    for entry in found.compensations:
        if entry.step in known:
            entry.after = compensation_after(defn, entry.step, compensated)


def _lanes(entries: list[Entry]) -> None:
    """Give overlapping entries different lanes (interval colouring by event order)."""
    ends: list[int | None] = []  # per lane: where its last entry ended; None: still open
    lane_of: dict[str, int] = {}
    for entry in sorted(entries, key=lambda e: e.started_seq):
        free = [i for i, end in enumerate(ends) if end is not None and end < entry.started_seq]
        preferred = [lane_of[name] for name in entry.after if lane_of.get(name) in free]
        if preferred:
            lane = preferred[0]
        elif free:
            lane = free[0]
        else:
            lane = len(ends)
            ends.append(None)
        ends[lane] = entry.ended_seq
        entry.lane = lane
        lane_of[entry.step] = lane


def _operator(
    found: Timeline,
    entries: dict[tuple[str, Direction], Entry],
    done: OperatorAction,
    at_ms: int,
    seq: int,
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
        entry.ended_seq = seq
