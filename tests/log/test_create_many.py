"""create_many: the group-commit path for starts, on every log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from saga.events import EventType, NewEvent, SagaStatus
from saga.log.base import NewSaga, SagaLog
from saga.log.memory import InMemorySagaLog
from saga.log.sql import SqlSagaLog


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def log(url: str) -> AsyncIterator[SagaLog]:
    saga_log: SagaLog = InMemorySagaLog() if url == "memory" else SqlSagaLog(url)
    await saga_log.open()
    yield saga_log
    await saga_log.close()


def new(saga_id: str, n: int, at_ms: int = 1000) -> NewSaga:
    started = NewEvent(
        type=EventType.SAGA_STARTED,
        data={"name": "s", "version": 1, "input": {"n": n}, "deadline_at_ms": None},
        at_ms=at_ms,
    )
    return NewSaga(saga_id=saga_id, name="s", version=1, input={"n": n}, started=started)


async def test_create_many_creates_new_and_returns_existing(log: SagaLog) -> None:
    await log.create(new("old", 0))
    results = await log.create_many([new("a", 1), new("old", 99), new("b", 2), new("a", 3)])
    assert [(r.saga_id, created) for r, created in results] == [
        ("a", True),
        ("old", False),
        ("b", True),
        ("a", False),
    ]
    assert results[1][0].input == {"n": 0}  # the existing saga, untouched
    assert results[3][0].input == {"n": 1}  # the first of the repeated ids won
    for saga_id in ("a", "b", "old"):
        events = await log.events(saga_id)
        assert [e.seq for e in events] == [1]
        assert events[0].type is EventType.SAGA_STARTED
        record = await log.get(saga_id)
        assert record is not None
        assert record.status is SagaStatus.RUNNING


async def test_create_many_in_large_batches(log: SagaLog) -> None:
    results = await log.create_many([new(f"s{i:04d}", i) for i in range(1200)])
    assert all(created for _, created in results)
    page = await log.find(limit=1000)
    assert len(page.sagas) == 1000
    assert page.next_cursor is not None
