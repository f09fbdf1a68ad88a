"""InMemorySagaLog: a dict-backed SagaLog with the same semantics as SqlSagaLog, for tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from saga.errors import ConcurrencyError, LogError, SagaNotFoundError
from saga.events import Event, Health
from saga.log.base import DEFAULT_QUERY, Append, NewSaga, Page, SagaLog, SagaQuery, SagaRecord


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
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

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
                last_seq=item.expected_seq + len(item.events),
                updated_ms=item.events[-1].at_ms if item.events else current.updated_ms,
            )
        self._sagas.update(staged)
        for event in new_events:
            self._events[event.saga_id].append(event)

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
