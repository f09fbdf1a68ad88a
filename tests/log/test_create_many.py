"""create_many: the group-commit path for starts, on every log."""

from __future__ import annotations

from saga.events import EventType, NewEvent, SagaStatus
from saga.log.base import NewSaga, SagaLog, SagaQuery


def new(saga_id: str, n: int, at_ms: int = 1000) -> NewSaga:
    started = NewEvent(
        type=EventType.SAGA_STARTED,
        data={"name": "s", "version": 1, "input": {"n": n}, "deadline_at_ms": None},
        at_ms=at_ms,
    )
    return NewSaga(saga_id=saga_id, name="s", version=1, input={"n": n}, started=started)


async def test_create_many_creates_new_and_returns_existing(any_log: SagaLog) -> None:
    await any_log.create(new("old", 0))
    results = await any_log.create_many([new("a", 1), new("old", 99), new("b", 2), new("a", 3)])
    assert [(r.saga_id, created) for r, created in results] == [
        ("a", True),
        ("old", False),
        ("b", True),
        ("a", False),
    ]
    assert results[1][0].input == {"n": 0}  # the existing saga, untouched
    assert results[3][0].input == {"n": 1}  # the first of the repeated ids won
    for saga_id in ("a", "b", "old"):
        events = await any_log.events(saga_id)
        assert [e.seq for e in events] == [1]
        assert events[0].type is EventType.SAGA_STARTED
        record = await any_log.get(saga_id)
        assert record is not None
        assert record.status is SagaStatus.RUNNING


async def test_create_many_in_large_batches(any_log: SagaLog) -> None:
    results = await any_log.create_many([new(f"s{i:04d}", i) for i in range(1200)])
    assert all(created for _, created in results)
    page = await any_log.find(SagaQuery(limit=1000))
    assert len(page.sagas) == 1000
    assert page.next_cursor is not None
