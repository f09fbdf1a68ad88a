"""The SagaLog port: the append-only event log and the saga table, the only source of truth."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from saga.errors import QueryError
from saga.events import Event, Health, JsonObject, NewEvent, SagaStatus
from saga.log.ownership import Ownership
from saga.log.paging import MAX_PAGE_SIZE, check_limit, decode_cursor, encode_cursor
from saga.names import NAME_RULE, SAGA_ID_RULE, is_name, is_saga_id

if TYPE_CHECKING:
    from saga.log.tally import Tally

_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True, kw_only=True)
class SagaRecord:
    """One row of the saga table: current status and what queries filter on."""

    saga_id: str
    name: str
    version: int
    status: SagaStatus
    input: JsonObject
    created_ms: int
    updated_ms: int
    last_seq: int
    current_step: str | None = None
    health: Health | None = None
    """None once the saga is completed or compensated."""
    attempt: int | None = None
    """The current step's (or compensation's) attempt number, when one has been sent."""
    owner: str | None = None
    """The coordinator (``coordinator_id``) that drives the saga, or last drove it; None
    while an unfinished saga waits to be claimed."""
    epoch: int = 0
    """How many times the saga was claimed: every write by its owner checks it."""
    waiting_for: str | None = None
    """The outside event a wait step of the saga waits for now (the first, if several do);
    None when none waits (and for sagas stored before the column existed)."""
    due_ms: int | None = None
    """The earliest deadline among the saga's accepted long-running steps (their completion
    deadline) and waiting wait steps (their timeout); None when it has neither."""


@dataclass(frozen=True, kw_only=True)
class NewSaga:
    """What ``SagaLog.create`` writes: the saga row, its first event (``saga_started``) and,
    in the same transaction, the events of its first decision (seq 2, 3, ...).

    Recording the first decision with the start saves a commit per saga: the coordinator
    decides on the new saga before writing it, and sends its first command once both are
    stored. The row's ``status``, ``current_step``, ``health``, ``attempt``, ``waiting_for``
    and ``due_ms`` describe the saga after those events (as ``Append`` does).
    """

    saga_id: str
    name: str
    version: int
    input: JsonObject
    started: NewEvent
    events: Sequence[NewEvent] = ()
    status: SagaStatus = SagaStatus.RUNNING
    current_step: str | None = None
    health: Health | None = Health.PROGRESSING
    attempt: int | None = None
    owner: str | None = None
    """The coordinator creating it, which owns it at epoch 1 (None: unowned, epoch 0)."""
    waiting_for: str | None = None
    """The outside event it waits for after those events (``SagaRecord.waiting_for``)."""
    due_ms: int | None = None
    """Its earliest accepted-step or wait deadline after those events (``SagaRecord.due_ms``)."""

    @property
    def epoch(self) -> int:
        return 0 if self.owner is None else 1

    @property
    def last_seq(self) -> int:
        return 1 + len(self.events)

    @property
    def updated_ms(self) -> int:
        return self.events[-1].at_ms if self.events else self.started.at_ms

    @property
    def all_events(self) -> list[NewEvent]:
        """``started`` then ``events``: seq 1, 2, ..."""
        return [self.started, *self.events]

    def record(self, stored_input: JsonObject) -> SagaRecord:
        """The row this creates, with its input as the log reads it back (``stored_input``)."""
        return SagaRecord(
            saga_id=self.saga_id,
            name=self.name,
            version=self.version,
            status=SagaStatus(self.status),
            input=stored_input,
            created_ms=self.started.at_ms,
            updated_ms=self.updated_ms,
            last_seq=self.last_seq,
            current_step=self.current_step,
            health=None if self.health is None else Health(self.health),
            attempt=self.attempt,
            owner=self.owner,
            epoch=self.epoch,
            waiting_for=self.waiting_for,
            due_ms=self.due_ms,
        )


@dataclass(frozen=True, kw_only=True)
class Append:
    """Events for one saga, appended after ``expected_seq`` (the last seq the writer saw).

    The events get seq ``expected_seq + 1, + 2, ...``; the saga row takes ``status``,
    ``current_step``, ``health``, ``attempt``, ``waiting_for`` and ``due_ms``. If another
    writer already appended past ``expected_seq`` the whole batch fails with ConcurrencyError.

    With an ``epoch`` the write is fenced: it is refused (FencedError, nothing written) unless
    the saga's row is still at that epoch, in the same statement that moves the row. A
    coordinator passes the epoch of its claim, so once another coordinator has claimed the
    saga nothing it decided before can be recorded. The events store the epoch.
    """

    saga_id: str
    expected_seq: int
    events: Sequence[NewEvent]
    status: SagaStatus
    current_step: str | None = None
    health: Health | None = None
    attempt: int | None = None
    epoch: int | None = None
    waiting_for: str | None = None
    """The outside event the saga waits for after these events (``SagaRecord.waiting_for``)."""
    due_ms: int | None = None
    """Its earliest accepted-step or wait deadline after them (``SagaRecord.due_ms``)."""


def _check_ms(value: object, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise QueryError(f"{what} must be int milliseconds, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TimeRange:
    """Epoch milliseconds ``since_ms <= t < before_ms``; either end may be open (None)."""

    since_ms: int | None = None
    """The first millisecond in the range (inclusive); None: no lower end."""
    before_ms: int | None = None
    """The first millisecond after the range (exclusive); None: no upper end."""

    def __post_init__(self) -> None:
        for value in (self.since_ms, self.before_ms):
            _check_ms(value, "time range ends")

    def __contains__(self, at_ms: object) -> bool:
        if not isinstance(at_ms, int):
            return False
        return (self.since_ms is None or at_ms >= self.since_ms) and (
            self.before_ms is None or at_ms < self.before_ms
        )


def effective_health(record: SagaRecord, stalled_before_ms: int | None) -> Health | None:
    """The stored health, except that an unfinished saga not updated since
    ``stalled_before_ms`` counts as stuck (no progress for longer than allowed)."""
    if record.health is None or stalled_before_ms is None:
        return record.health
    if record.health is not Health.STUCK and record.updated_ms < stalled_before_ms:
        return Health.STUCK
    return record.health


def _members(values: Collection[_E] | None, kind: type[_E], what: str) -> frozenset[_E] | None:
    """``values`` as a set of ``kind`` members (their string values are accepted too)."""
    if values is None:
        return None
    if isinstance(values, str | bytes):
        raise QueryError(f"{what} must be a collection of {kind.__name__}, not one string")
    try:
        return frozenset(kind(value) for value in values)
    except (TypeError, ValueError) as exc:
        allowed = ", ".join(member.value for member in kind)
        raise QueryError(f"{what} must be among {allowed}: {exc}") from exc


INPUT_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""The top-level input field names a query can compare (``SagaQuery.input_equals``)."""
INPUT_FIELD_RULE = "1 to 64 ASCII letters, digits or '_', not starting with a digit"
MAX_INPUT_FILTERS = 4
"""The most input fields one query compares."""
MAX_INPUT_VALUE = 200
"""The longest value an input field is compared with."""


def input_matches(saga_input: JsonObject, field: str, value: str) -> bool:
    """Whether the input's top-level ``field`` is the string ``value``, or an integer written
    ``value`` (``"42"`` finds ``42`` and ``"42"``; booleans, floats and objects never match)."""
    found = saga_input.get(field)
    if isinstance(found, str):
        return found == value
    return isinstance(found, int) and not isinstance(found, bool) and str(found) == value


def _check_input_equals(pairs: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(pairs, tuple | list):
        raise QueryError("input_equals must be a sequence of (field, value) pairs")
    found: list[tuple[str, str]] = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise QueryError("input_equals must be a sequence of (field, value) pairs")
        field, value = pair
        if not isinstance(field, str) or INPUT_FIELD.fullmatch(field) is None:
            shown = repr(field)[:60]
            raise QueryError(
                f"input field {shown} is not a field name: it must be {INPUT_FIELD_RULE}"
            )
        if not isinstance(value, str) or len(value) > MAX_INPUT_VALUE:
            raise QueryError(
                f"input.{field} must be compared with a string of at most {MAX_INPUT_VALUE}"
                " characters"
            )
        found.append((field, value))
    if len(found) > MAX_INPUT_FILTERS:
        raise QueryError(f"at most {MAX_INPUT_FILTERS} input fields can be compared at once")
    return tuple(found)


@dataclass(frozen=True, kw_only=True)
class SagaQuery:
    """Which sagas ``SagaLog.find`` returns, and which page of them: one filter, one place.

    Every filter that is not None must hold. The query checks itself when it is made (a bad
    limit, cursor or time range is a QueryError then, before any log is asked), and
    ``matches`` is the filter's meaning, which the SQL adapter mirrors in ``log/sql/query.py``.
    """

    statuses: Collection[SagaStatus] | None = None
    """Sagas in one of these statuses; an empty collection matches none. Kept as a frozenset."""
    name: str | None = None
    """Sagas of this definition name."""
    healths: Collection[Health] | None = None
    """Sagas whose ``effective_health`` (given ``stalled_before_ms``) is one of these; an empty
    collection matches none, and finished sagas (no health) never match. Kept as a frozenset."""
    current_step: str | None = None
    """Sagas whose current step (or compensation) is this step."""
    waiting_for: str | None = None
    """Sagas waiting for this outside event now (``SagaRecord.waiting_for``)."""
    created: TimeRange | None = None
    """Sagas created in this range."""
    updated: TimeRange | None = None
    """Sagas last updated in this range."""
    stalled_before_ms: int | None = None
    """For ``healths``: an unfinished saga not updated since then counts as stuck."""
    saga_id: str | None = None
    """The saga with exactly this id."""
    saga_id_prefix: str | None = None
    """Sagas whose id starts with this (a valid saga id itself)."""
    input_equals: Sequence[tuple[str, str]] = ()
    """(field, value) pairs: sagas whose input's top-level field is each value, as
    ``input_matches`` compares. Kept as a tuple. Not indexed: combine it with a narrower
    filter (a name, a time range) on a large log."""
    limit: int = 100
    """The most sagas on one page, 1 to ``MAX_PAGE_SIZE``."""
    cursor: str | None = None
    """The ``next_cursor`` of the previous page (None: the first page)."""

    def __post_init__(self) -> None:
        # Stored as frozensets (frozen, hashable, and fast for ``in``); object.__setattr__ is
        # the dataclass way to normalise a frozen instance's fields.
        object.__setattr__(self, "statuses", _members(self.statuses, SagaStatus, "statuses"))
        object.__setattr__(self, "healths", _members(self.healths, Health, "healths"))
        for span in (self.created, self.updated):
            if span is not None and not isinstance(span, TimeRange):
                raise QueryError(f"created and updated must be TimeRange, got {span!r}")
        _check_ms(self.stalled_before_ms, "stalled_before_ms")
        if self.waiting_for is not None and not is_name(self.waiting_for):
            # Event names follow the name grammar (``Wait.event``): anything else waits for
            # nothing, and is a mistake worth saying so.
            shown = repr(self.waiting_for)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise QueryError(f"waiting_for {shown} is not an event name: it must be {NAME_RULE}")
        object.__setattr__(self, "input_equals", _check_input_equals(self.input_equals))
        for what, value in (("saga_id", self.saga_id), ("saga_id_prefix", self.saga_id_prefix)):
            if value is not None and not is_saga_id(value):
                shown = repr(value)[:60]
                raise QueryError(f"{what} {shown} is not a saga id: it must be {SAGA_ID_RULE}")
        check_limit(self.limit)
        if self.cursor is not None:
            decode_cursor(self.cursor)

    @property
    def after(self) -> tuple[int, str] | None:
        """The (created_ms, saga_id) the page starts after (from ``cursor``), or None."""
        return None if self.cursor is None else decode_cursor(self.cursor)

    def matches(self, record: SagaRecord) -> bool:
        """Whether ``record`` passes every filter (the page position, ``cursor``, aside)."""
        return (
            (self.statuses is None or record.status in self.statuses)
            and (self.name is None or record.name == self.name)
            and (
                self.healths is None
                or effective_health(record, self.stalled_before_ms) in self.healths
            )
            and (self.current_step is None or record.current_step == self.current_step)
            and (self.waiting_for is None or record.waiting_for == self.waiting_for)
            and (self.created is None or record.created_ms in self.created)
            and (self.updated is None or record.updated_ms in self.updated)
            and (self.saga_id is None or record.saga_id == self.saga_id)
            and (self.saga_id_prefix is None or record.saga_id.startswith(self.saga_id_prefix))
            and all(input_matches(record.input, f, v) for f, v in self.input_equals)
        )

    def next_page(self, page: Page) -> SagaQuery | None:
        """This query for the page after ``page``, or None when ``page`` was the last."""
        return None if page.next_cursor is None else replace(self, cursor=page.next_cursor)


@dataclass(frozen=True, kw_only=True)
class Page:
    """A page of sagas, newest first, and the cursor for the next page (None at the end)."""

    sagas: list[SagaRecord]
    """This page's sagas, newest (created) first."""
    next_cursor: str | None
    """The cursor for the next page (``SagaQuery.cursor``); None on the last page."""

    @classmethod
    def of(cls, found: list[SagaRecord], limit: int) -> Page:
        """The page for ``found``: up to ``limit + 1`` matches, newest first; the one more
        than asked says that another page exists, without a COUNT."""
        sagas = found[:limit]
        next_cursor = None
        if len(found) > limit:
            next_cursor = encode_cursor(sagas[-1].created_ms, sagas[-1].saga_id)
        return cls(sagas=sagas, next_cursor=next_cursor)


DEFAULT_QUERY = SagaQuery()
"""No filter: the newest 100 sagas (what ``find()`` without a query returns)."""
UNFINISHED = SagaQuery(statuses=[s for s in SagaStatus if not s.is_final], limit=MAX_PAGE_SIZE)
"""Every saga recovery resumes (running, compensating, stuck), in the largest pages."""


class SagaLog(ABC):
    """Where sagas and their events live. Implementations: InMemorySagaLog, SqlSagaLog."""

    @property
    @abstractmethod
    def ownership(self) -> Ownership:
        """Which coordinator owns which saga: leases, claims, hand-backs
        (``saga.log.ownership``)."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and create or upgrade the schema."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    @abstractmethod
    async def create(self, saga: NewSaga) -> tuple[SagaRecord, bool]:
        """Insert a saga's row and its events (``started`` at seq 1, then ``saga.events``).

        Returns ``(record, True)``; if a saga with that id exists already, nothing is written
        and ``(existing record, False)`` is returned, so starting the same id twice is safe.
        """

    async def create_many(self, sagas: Sequence[NewSaga]) -> list[tuple[SagaRecord, bool]]:
        """``create`` for many sagas at once (one transaction where the log can), in order.

        The group-commit path for starts. Ids repeated within ``sagas`` are created once.
        """
        return [await self.create(saga) for saga in sagas]

    @abstractmethod
    async def append(self, batch: Sequence[Append]) -> None:
        """Append events for one or more sagas in one transaction: all or nothing.

        Raises ConcurrencyError if any saga's ``expected_seq`` is not its last seq, and
        SagaNotFoundError if a saga does not exist.
        """

    @abstractmethod
    async def get(self, saga_id: str) -> SagaRecord | None:
        """The saga row, or None."""

    @abstractmethod
    async def events(self, saga_id: str, after_seq: int = 0) -> list[Event]:
        """The saga's events with seq > after_seq, in order (empty for an unknown id)."""

    async def events_many(self, saga_ids: Sequence[str]) -> dict[str, list[Event]]:
        """Every event of each saga in ``saga_ids``, in order (recovery reads in batches).

        An unknown id maps to an empty list. SqlSagaLog reads a batch in a few queries.
        """
        return {saga_id: await self.events(saga_id) for saga_id in saga_ids}

    @abstractmethod
    async def find(self, query: SagaQuery = DEFAULT_QUERY) -> Page:
        """One page of the sagas ``query`` matches, newest (created) first.

        ``query.cursor`` continues from an earlier page (``Page.next_cursor``). Each filter
        is served by an index in SqlSagaLog; none needs a full scan.
        """

    async def find_all(self, query: SagaQuery) -> list[SagaRecord]:
        """Every saga ``query`` matches, newest first: ``find`` page after page."""
        found: list[SagaRecord] = []
        page_query: SagaQuery | None = query
        while page_query is not None:
            page = await self.find(page_query)
            found.extend(page.sagas)
            page_query = page_query.next_page(page)
        return found

    async def tally(
        self, since_ms: int, until_ms: int, *, stalled_before_ms: int | None = None
    ) -> Tally:
        """Counts by status and effective health over every saga now, and over the window
        ``since_ms <= t < until_ms`` (whole minutes, at most a day) the sagas started,
        completed, compensated and stuck per minute, durations per saga name and the steps
        that failed most (``saga.log.tally``). QueryError for a bad window.

        This default reads every saga; SqlSagaLog answers with SQL aggregates.
        """
        from saga.log.tally import check_window, tally_of  # tally imports this module

        check_window(since_ms, until_ms)
        records = await self.find_all(SagaQuery(limit=MAX_PAGE_SIZE))
        recent = [r.saga_id for r in records if r.updated_ms >= since_ms]
        return tally_of(
            records, await self.events_many(recent), since_ms, until_ms, stalled_before_ms
        )

    async def done_by_hand(self, saga_ids: Sequence[str]) -> set[str]:
        """Which of ``saga_ids`` an operator resolved, skipped or forced forward: a step or
        compensation of theirs was marked done by hand (an ``operator_action`` event)."""
        from saga.log.tally import done_by_hand  # tally imports this module

        found = await self.events_many(saga_ids)
        return {saga_id for saga_id, events in found.items() if done_by_hand(events)}

    async def unfinished(self) -> list[SagaRecord]:
        """Every saga that is running, compensating or stuck (what recovery resumes)."""
        return await self.find_all(UNFINISHED)
