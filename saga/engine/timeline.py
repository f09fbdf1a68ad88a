"""A saga's timeline, from its events: each step and compensation with its attempts, and audits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from saga.definition import StepKind
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


def timeline(events: Iterable[Event]) -> Timeline:
    """Fold a saga's events (in seq order) into its timeline. Pure; unknown events are skipped."""
    found = Timeline()
    entries: dict[tuple[str, Direction], Entry] = {}

    def entry_for(data: JsonObject) -> Entry | None:
        try:
            return entries.get((str(data["step"]), Direction(data["direction"])))
        except (KeyError, ValueError):
            return None

    for event in events:
        data = event.data
        if event.type in _MARKS:
            reason = data.get("reason")
            found.marks.append(
                Mark(at_ms=event.at_ms, kind=_MARKS[event.type], reason=_text(reason))
            )
        if event.type is EventType.STEP_SENT:
            direction = Direction(data["direction"])
            key = (str(data["step"]), direction)
            entry = entries.get(key)
            if entry is None:
                entry = Entry(
                    step=key[0],
                    direction=direction,
                    service=str(data.get("service", "")),
                    command=str(data.get("command", "")),
                    kind=str(data.get("kind", StepKind.COMPENSATABLE.value)),
                )
                entries[key] = entry
                lane = found.steps if direction is Direction.FORWARD else found.compensations
                lane.append(entry)
            entry.stuck = False
            entry.attempts.append(Attempt(attempt=int(data["attempt"]), sent_ms=event.at_ms))
        elif event.type in _OUTCOMES:
            entry = entry_for(data)
            if entry is not None and entry.attempts:
                last = entry.attempts[-1]
                last.outcome = _OUTCOMES[event.type]
                last.finished_ms = event.at_ms
                last.error = data.get("error")
        elif event.type is EventType.RETRY_SCHEDULED:
            entry = entry_for(data)
            if entry is not None and entry.attempts:
                entry.attempts[-1].retry_at_ms = int(data["retry_at_ms"])
        elif event.type is EventType.SAGA_STUCK:
            entry = entry_for(data) if "step" in data else None
            if entry is not None:
                entry.stuck = True
        elif event.type is EventType.SAGA_RESUMED:
            for entry in entries.values():
                entry.stuck = False
        elif event.type is EventType.OPERATOR_ACTION:
            _operator(found, entries, event)
    return found


def _operator(found: Timeline, entries: dict[tuple[str, Direction], Entry], event: Event) -> None:
    data = event.data
    action = str(data.get("action", ""))
    audit = OperatorEntry(
        at_ms=event.at_ms,
        action=action,
        actor=str(data.get("actor", "")),
        reason=str(data.get("reason", "")),
        step=_text(data.get("step")),
        direction=_text(data.get("direction")),
    )
    found.operator_actions.append(audit)
    if audit.step is None or audit.direction is None:
        return
    entry = entries.get((audit.step, Direction(audit.direction)))
    if entry is None:
        return
    entry.stuck = False
    unfinished = not entry.attempts or entry.attempts[-1].outcome is not AttemptOutcome.SUCCEEDED
    # force_forward takes an unfinished pivot as done; on a failing step after the pivot it
    # retries without limit instead, and the timeline shows the later attempts.
    forced = action == "force_forward" and entry.kind == StepKind.PIVOT
    if unfinished and (action in ("resolve", "skip") or forced):
        entry.by_hand = ByHand(
            action=action, actor=audit.actor, reason=audit.reason, at_ms=audit.at_ms
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
