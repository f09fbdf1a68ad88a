"""InMemorySagaLog: a dict-backed SagaLog with the same semantics as SqlSagaLog, for tests."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from saga.errors import ConcurrencyError, FencedError, LogError, SagaNotFoundError
from saga.events import Event, Health
from saga.log.base import DEFAULT_QUERY, Append, NewSaga, Page, SagaLog, SagaQuery, SagaRecord
from saga.log.ownership import Audit, Census, Claim, Load, Member, Ownership, overlaps


def _normalise(value: Any, what: str) -> Any:
    """``value`` as it would come back from a SQL JSON column (a fresh copy), or LogError."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise LogError(f"{what} is not JSON-serialisable: {exc}") from exc


def _copy_record(record: SagaRecord) -> SagaRecord:
    return replace(record, input=copy.deepcopy(record.input))


def _copy_event(event: Event) -> Event:
    return replace(event, data=copy.deepcopy(event.data))


class InMemorySagaLog(SagaLog):
    """A SagaLog in process memory: nothing survives the process.

    It behaves like SqlSagaLog in every observable way (JSON round-trips, all-or-nothing
    batches, ordering, pagination, errors), so code tested against it behaves the same on a
    real database. Data is copied on the way in and out; callers cannot mutate stored state.
    Closing keeps the data: a closed log can be opened again.
    """

    def __init__(self) -> None:
        self._sagas: dict[str, SagaRecord] = {}
        self._events: dict[str, list[Event]] = {}
        self._opened = 0
        self._ownership = InMemoryOwnership(self)

    @property
    def ownership(self) -> Ownership:
        return self._ownership

    @property
    def claims(self) -> list[OwnerChange]:
        """Every claim so far, in order (``saga_owners`` in SQL)."""
        return list(self._ownership.history)

    def epochs(self, saga_id: str) -> list[int | None]:
        """The epoch each of the saga's events was written under, by seq."""
        return list(self._ownership.event_epochs.get(saga_id, []))

    async def open(self) -> None:
        self._opened += 1

    async def close(self) -> None:
        # Several coordinators in one process may share the log: it stays open until each
        # that opened it has closed it.
        self._opened = max(self._opened - 1, 0)

    @property
    def _open(self) -> bool:
        return self._opened > 0

    def _check_open(self) -> None:
        if not self._open:
            raise LogError("the saga log is not open; call open() first")

    async def create(self, saga: NewSaga) -> tuple[SagaRecord, bool]:
        self._check_open()
        existing = self._sagas.get(saga.saga_id)
        if existing is not None:
            return _copy_record(existing), False
        record = saga.record(_normalise(saga.input, "saga input"))
        events = [
            Event(
                saga_id=saga.saga_id,
                seq=seq,
                type=new.type,
                data=_normalise(new.data, "event data"),
                at_ms=new.at_ms,
                format=new.format,
            )
            for seq, new in enumerate(saga.all_events, start=1)
        ]
        self._sagas[saga.saga_id] = record
        self._events[saga.saga_id] = events
        self._ownership.event_epochs[saga.saga_id] = [saga.epoch or None] * len(events)
        return _copy_record(record), True

    async def append(self, batch: Sequence[Append]) -> None:
        self._check_open()
        # Stage every change first and apply only if all of them check out: all or nothing.
        # Sagas are visited in saga_id order, as SqlSagaLog locks them, so the same batch
        # fails with the same error on either adapter.
        staged: dict[str, SagaRecord] = {}
        new_events: list[Event] = []
        for item in sorted(batch, key=lambda a: a.saga_id):
            current = staged.get(item.saga_id) or self._sagas.get(item.saga_id)
            if current is None:
                raise SagaNotFoundError(f"no saga {item.saga_id!r}", saga_id=item.saga_id)
            if item.epoch is not None and current.epoch != item.epoch:
                raise FencedError(
                    f"saga {item.saga_id!r} was taken over (epoch {current.epoch},"
                    f" not {item.epoch})",
                    saga_id=item.saga_id,
                )
            if current.last_seq != item.expected_seq:
                raise ConcurrencyError(
                    f"saga {item.saga_id!r} is at seq {current.last_seq}, "
                    f"not the expected {item.expected_seq}",
                    saga_id=item.saga_id,
                )
            for offset, new in enumerate(item.events, start=1):
                new_events.append(
                    Event(
                        saga_id=item.saga_id,
                        seq=item.expected_seq + offset,
                        type=new.type,
                        data=_normalise(new.data, "event data"),
                        at_ms=new.at_ms,
                        format=new.format,
                    )
                )
            staged[item.saga_id] = replace(
                current,
                status=item.status,
                current_step=item.current_step,
                health=None if item.health is None else Health(item.health),
                attempt=item.attempt,
                waiting_for=item.waiting_for,
                due_ms=item.due_ms,
                last_seq=item.expected_seq + len(item.events),
                updated_ms=item.events[-1].at_ms if item.events else current.updated_ms,
            )
        self._sagas.update(staged)
        epochs = {item.saga_id: item.epoch for item in batch}
        for event in new_events:
            self._events[event.saga_id].append(event)
            self._ownership.event_epochs[event.saga_id].append(epochs[event.saga_id])

    async def get(self, saga_id: str) -> SagaRecord | None:
        self._check_open()
        record = self._sagas.get(saga_id)
        return None if record is None else _copy_record(record)

    async def events(self, saga_id: str, after_seq: int = 0) -> list[Event]:
        self._check_open()
        stored = self._events.get(saga_id, [])
        # seq is contiguous from 1, so the list index of seq n is n - 1.
        return [_copy_event(e) for e in stored[max(after_seq, 0) :]]

    async def find(self, query: SagaQuery = DEFAULT_QUERY) -> Page:
        self._check_open()
        after = query.after
        found = sorted(
            (
                r
                for r in self._sagas.values()
                if query.matches(r) and (after is None or (r.created_ms, r.saga_id) < after)
            ),
            key=lambda r: (r.created_ms, r.saga_id),
            reverse=True,
        )
        return Page.of([_copy_record(r) for r in found[: query.limit + 1]], query.limit)


@dataclass(frozen=True, kw_only=True)
class OwnerChange:
    """One claim of a saga: who took it at which epoch, from whom, after which seq."""

    saga_id: str
    epoch: int
    owner: str
    previous: str | None
    after_seq: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class InMemoryOwnership(Ownership):
    """Ownership for an InMemorySagaLog, with the SQL adapter's semantics: several
    coordinators in one process can share the log, with leases on the wall clock."""

    def __init__(self, log: InMemorySagaLog) -> None:
        self._log = log
        self._members: dict[str, Member] = {}
        self.history: list[OwnerChange] = []
        self.event_epochs: dict[str, list[int | None]] = {}

    def _live(self, coordinator_id: str | None, now: int) -> bool:
        member = self._members.get(coordinator_id or "")
        return member is not None and member.lease_until_ms >= now

    def _move(self, record: SagaRecord, owner: str | None) -> SagaRecord:
        moved = replace(record, owner=owner, epoch=record.epoch + 1)
        self._log._sagas[record.saga_id] = moved
        if owner is not None:
            self.history.append(
                OwnerChange(
                    saga_id=record.saga_id,
                    epoch=moved.epoch,
                    owner=owner,
                    previous=record.owner,
                    after_seq=record.last_seq,
                )
            )
        return moved

    def _unfinished(self) -> list[SagaRecord]:
        found = [r for r in self._log._sagas.values() if not r.status.is_final]
        return sorted(found, key=lambda r: (r.created_ms, r.saga_id))

    async def join(
        self, coordinator_id: str, name: str, lease_ms: int, api_url: str | None = None
    ) -> None:
        self._log._check_open()
        now = _now_ms()
        for member in list(self._members.values()):
            if member.name == name and member.lease_until_ms >= now:
                self._members[member.coordinator_id] = replace(member, lease_until_ms=now - 1)
        self._members[coordinator_id] = Member(
            coordinator_id=coordinator_id,
            name=name,
            started_ms=now,
            renewed_ms=now,
            lease_until_ms=now + lease_ms,
            api_url=api_url,
        )

    async def renew(self, coordinator_id: str, lease_ms: int, load: Load) -> bool:
        self._log._check_open()
        now = _now_ms()
        member = self._members.get(coordinator_id)
        if member is None or member.lease_until_ms < now:
            return False
        self._members[coordinator_id] = replace(
            member,
            renewed_ms=now,
            lease_until_ms=now + lease_ms,
            sagas=load.sagas,
            in_flight=load.in_flight,
            fenced_writes=load.fenced_writes,
        )
        return True

    async def leave(self, coordinator_id: str) -> int:
        self._log._check_open()
        now = _now_ms()
        released = 0
        for record in self._unfinished():
            if record.owner == coordinator_id:
                self._move(record, None)
                released += 1
        member = self._members.get(coordinator_id)
        if member is not None:
            self._members[coordinator_id] = replace(
                member, lease_until_ms=now - 1, stopped_ms=now, sagas=0, in_flight=0
            )
        return released

    async def claim(self, coordinator_id: str, limit: int) -> list[Claim]:
        self._log._check_open()
        now = _now_ms()
        claims: list[Claim] = []
        for record in self._unfinished():
            if len(claims) >= limit:
                break
            if record.owner == coordinator_id or self._live(record.owner, now):
                continue
            moved = self._move(record, coordinator_id)
            claims.append(Claim(moved.saga_id, moved.epoch))
        return claims

    async def take(self, coordinator_id: str, saga_id: str) -> Claim | None:
        self._log._check_open()
        record = self._log._sagas.get(saga_id)
        if record is None or record.status.is_final:
            return None
        moved = self._move(record, coordinator_id)
        return Claim(moved.saga_id, moved.epoch)

    async def release(self, coordinator_id: str, saga_ids: Collection[str]) -> int:
        self._log._check_open()
        released = 0
        for saga_id in saga_ids:
            record = self._log._sagas.get(saga_id)
            if record is not None and record.owner == coordinator_id and not record.status.is_final:
                self._move(record, None)
                released += 1
        return released

    async def members(self, *, include_ended_ms: int = 0) -> list[Member]:
        self._log._check_open()
        now = _now_ms()
        found = [m for m in self._members.values() if m.lease_until_ms >= now - include_ended_ms]
        return sorted(found, key=lambda m: (m.name, m.started_ms))

    async def census(self) -> Census:
        self._log._check_open()
        now = _now_ms()
        live = sum(1 for m in self._members.values() if m.lease_until_ms >= now)
        return Census(unfinished=len(self._unfinished()), live=live, now_ms=now)

    async def audit(self) -> Audit:
        self._log._check_open()
        by_saga: dict[str, list[tuple[int, int]]] = {}
        for change in self.history:
            by_saga.setdefault(change.saga_id, []).append((change.after_seq, change.epoch))
        return Audit(
            claims=len(self.history),
            taken_over=len({c.saga_id for c in self.history if c.previous is not None}),
            driven_by_two=sum(
                overlaps(claims, self.event_epochs.get(saga_id, []))
                for saga_id, claims in by_saga.items()
            ),
        )

    async def owned(self, coordinator_id: str) -> list[Claim]:
        self._log._check_open()
        return [Claim(r.saga_id, r.epoch) for r in self._unfinished() if r.owner == coordinator_id]
