"""What ``SagaLog.tally`` answers: counts by status and health, and figures over a window.

``Tally`` is the value; ``tally_of`` computes it from saga rows and events in Python (the
in-memory log, and the meaning the SQL adapter's aggregates in ``log/sql/tally.py`` mirror).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from saga.errors import QueryError
from saga.events import Event, EventType, Health, SagaStatus
from saga.log.base import SagaRecord, effective_health

MINUTE_MS = 60_000
"""The width of one bucket of the time series."""
MAX_WINDOW_MS = 1440 * MINUTE_MS
"""The longest window a tally covers (a day of minutes)."""
FAILING_STEPS = 10
"""How many of the steps that fail most a tally lists."""
BY_HAND_ACTIONS = frozenset({"resolve", "skip", "force_forward"})
"""The operator actions (``operator_action`` events' ``action``) that mark a step or
compensation done by hand; a saga with one of them was (partly) resolved by hand."""
FAILURES = (EventType.STEP_FAILED.value, EventType.STEP_REJECTED.value)
"""The event types that count as a step's (or compensation's) failed attempt."""


@dataclass(frozen=True, kw_only=True)
class Minute:
    """One minute of the time series: what happened in ``[start_ms, start_ms + 60 s)``."""

    start_ms: int
    """The minute's first millisecond (a multiple of ``MINUTE_MS``)."""
    started: int = 0
    """Sagas created in the minute."""
    completed: int = 0
    """Sagas that completed in the minute (their last update)."""
    compensated: int = 0
    """Sagas that finished compensated in the minute (their last update)."""
    stuck: int = 0
    """Sagas that became stuck in the minute (``saga_stuck`` events)."""


@dataclass(frozen=True, kw_only=True)
class NameFigures:
    """Per saga name, over the sagas that finished in the window."""

    name: str
    """The saga definition's name."""
    completed: int
    """How many completed."""
    compensated: int
    """How many finished compensated."""
    p50_ms: int
    """The median duration (created to finished), nearest rank."""
    p99_ms: int
    """The 99th percentile duration, nearest rank."""

    @property
    def compensation_rate(self) -> float:
        """The share of finished sagas that compensated, 0 to 1."""
        return self.compensated / (self.completed + self.compensated)


@dataclass(frozen=True, kw_only=True)
class FailingStep:
    """A step (or compensation) of one saga name, and its failed attempts in the window."""

    name: str
    """The saga definition's name."""
    step: str
    """The step's name."""
    direction: str
    """``forward`` or ``compensate``."""
    failures: int
    """Its ``step_failed`` and ``step_rejected`` events in the window."""


@dataclass(frozen=True, kw_only=True)
class Tally:
    """Counts over every saga, and figures over the window ``since_ms <= t < until_ms``."""

    since_ms: int
    """The window's first millisecond (a minute boundary)."""
    until_ms: int
    """The first millisecond after the window (a minute boundary)."""
    statuses: Mapping[SagaStatus, int]
    """How many sagas are in each status now (every status, zeros included)."""
    healths: Mapping[Health, int]
    """How many unfinished sagas have each effective health now (every health)."""
    minutes: Sequence[Minute]
    """The time series, one entry per minute of the window, oldest first."""
    names: Sequence[NameFigures]
    """Per saga name with a saga finished in the window, by name."""
    failing_steps: Sequence[FailingStep]
    """The ``FAILING_STEPS`` steps that failed most in the window, most first."""


def check_window(since_ms: int, until_ms: int) -> None:
    """QueryError unless the window is whole minutes, non-empty and at most a day."""
    for value in (since_ms, until_ms):
        if isinstance(value, bool) or not isinstance(value, int):
            raise QueryError(f"a tally's window ends must be int milliseconds, got {value!r}")
    if since_ms % MINUTE_MS or until_ms % MINUTE_MS:
        raise QueryError("a tally's window must start and end on whole minutes")
    if not 0 < until_ms - since_ms <= MAX_WINDOW_MS:
        raise QueryError(f"a tally's window must be 1 to {MAX_WINDOW_MS // MINUTE_MS} minutes")


def rank(share_percent: int, count: int) -> int:
    """The 1-based nearest rank of a percentile among ``count`` sorted values."""
    return max(1, (share_percent * count + 99) // 100)


def series(since_ms: int, until_ms: int, counts: Mapping[tuple[int, str], int]) -> list[Minute]:
    """Every minute of the window, from ``counts`` keyed by (minute start, figure name)."""
    return [
        Minute(
            start_ms=start,
            started=counts.get((start, "started"), 0),
            completed=counts.get((start, "completed"), 0),
            compensated=counts.get((start, "compensated"), 0),
            stuck=counts.get((start, "stuck"), 0),
        )
        for start in range(since_ms, until_ms, MINUTE_MS)
    ]


def top_failures(counts: Mapping[tuple[str, str, str], int]) -> list[FailingStep]:
    """The ``FAILING_STEPS`` most failing (name, step, direction), most first, then by name."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [
        FailingStep(name=name, step=step, direction=direction, failures=failures)
        for (name, step, direction), failures in ordered[:FAILING_STEPS]
    ]


def tally_of(
    records: Iterable[SagaRecord],
    events: Mapping[str, Sequence[Event]],
    since_ms: int,
    until_ms: int,
    stalled_before_ms: int | None,
) -> Tally:
    """The tally of every saga in ``records``; ``events`` holds (at least) the events of the
    sagas updated in the window."""
    check_window(since_ms, until_ms)
    statuses: Counter[SagaStatus] = Counter()
    healths: Counter[Health] = Counter()
    counts: Counter[tuple[int, str]] = Counter()
    durations: dict[str, list[int]] = {}
    finished: Counter[tuple[str, SagaStatus]] = Counter()
    failing: Counter[tuple[str, str, str]] = Counter()

    def minute(at_ms: int) -> int:
        return at_ms - at_ms % MINUTE_MS

    for record in records:
        statuses[record.status] += 1
        found = effective_health(record, stalled_before_ms)
        if found is not None:
            healths[found] += 1
        if since_ms <= record.created_ms < until_ms:
            counts[(minute(record.created_ms), "started")] += 1
        if record.status.is_final and since_ms <= record.updated_ms < until_ms:
            counts[(minute(record.updated_ms), record.status.value)] += 1
            finished[(record.name, record.status)] += 1
            durations.setdefault(record.name, []).append(record.updated_ms - record.created_ms)
        if record.updated_ms < since_ms:
            continue  # no event of it can be in the window
        for event in events.get(record.saga_id, ()):
            if not since_ms <= event.at_ms < until_ms:
                continue
            if event.type is EventType.SAGA_STUCK:
                counts[(minute(event.at_ms), "stuck")] += 1
            elif event.type.value in FAILURES:
                key = (record.name, str(event.data.get("step")), _direction(event))
                failing[key] += 1
    names = []
    for name in sorted(durations):
        ordered = sorted(durations[name])
        names.append(
            NameFigures(
                name=name,
                completed=finished[(name, SagaStatus.COMPLETED)],
                compensated=finished[(name, SagaStatus.COMPENSATED)],
                p50_ms=ordered[rank(50, len(ordered)) - 1],
                p99_ms=ordered[rank(99, len(ordered)) - 1],
            )
        )
    return Tally(
        since_ms=since_ms,
        until_ms=until_ms,
        statuses={status: statuses[status] for status in SagaStatus},
        healths={health: healths[health] for health in Health},
        minutes=series(since_ms, until_ms, counts),
        names=names,
        failing_steps=top_failures(failing),
    )


def _direction(event: Event) -> str:
    direction = event.data.get("direction")
    return direction if isinstance(direction, str) else "forward"


def done_by_hand(events: Iterable[Event]) -> bool:
    """Whether an operator marked a step or compensation of the saga done by hand."""
    return any(
        event.type is EventType.OPERATOR_ACTION and event.data.get("action") in BY_HAND_ACTIONS
        for event in events
    )
