"""The SagaLog port: the append-only event log and the saga table, the only source of truth."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from saga.events import Event, Health, JsonObject, NewEvent, SagaStatus


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


@dataclass(frozen=True, kw_only=True)
class NewSaga:
    """What ``SagaLog.create`` writes: the saga row and its first event (``saga_started``)."""

    saga_id: str
    name: str
    version: int
    input: JsonObject
    started: NewEvent


@dataclass(frozen=True, kw_only=True)
class Append:
    """Events for one saga, appended after ``expected_seq`` (the last seq the writer saw).

    The events get seq ``expected_seq + 1, + 2, ...``; the saga row takes ``status``,
    ``current_step``, ``health`` and ``attempt``. If another writer already appended past
    ``expected_seq`` the whole batch fails with ConcurrencyError.
    """

    saga_id: str
    expected_seq: int
    events: Sequence[NewEvent]
    status: SagaStatus
    current_step: str | None = None
    health: Health | None = None
    attempt: int | None = None


@dataclass(frozen=True, kw_only=True)
class TimeRange:
    """Epoch milliseconds ``since_ms <= t < before_ms``; either end may be open (None)."""

    since_ms: int | None = None
    before_ms: int | None = None

    def __post_init__(self) -> None:
        for value in (self.since_ms, self.before_ms):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"time range ends must be int milliseconds, got {value!r}")

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


@dataclass(frozen=True, kw_only=True)
class Page:
    """A page of sagas, newest first, and the cursor for the next page (None at the end)."""

    sagas: list[SagaRecord]
    next_cursor: str | None


class SagaLog(ABC):
    """Where sagas and their events live. Implementations: InMemorySagaLog, SqlSagaLog."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and create or upgrade the schema."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    @abstractmethod
    async def create(self, saga: NewSaga) -> tuple[SagaRecord, bool]:
        """Insert a saga with status running, health progressing, and its first event at seq 1.

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

    @abstractmethod
    async def find(
        self,
        *,
        statuses: Sequence[SagaStatus] | None = None,
        name: str | None = None,
        healths: Sequence[Health] | None = None,
        current_step: str | None = None,
        created: TimeRange | None = None,
        updated: TimeRange | None = None,
        stalled_before_ms: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Sagas matching every given filter, newest (created) first, cursor-paginated.

        ``healths`` matches the stored health, or with ``stalled_before_ms`` the
        ``effective_health`` (an unfinished saga not updated since then counts as stuck).
        Each filter is served by an index in SqlSagaLog; none needs a full scan.
        """

    async def unfinished(self) -> list[SagaRecord]:
        """Every saga that is running, compensating or stuck (what recovery resumes)."""
        found: list[SagaRecord] = []
        cursor: str | None = None
        statuses = [SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.STUCK]
        while True:
            page = await self.find(statuses=statuses, limit=1000, cursor=cursor)
            found.extend(page.sagas)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor
