"""The saga row carries the current attempt, for the list view (migration 0003)."""

from __future__ import annotations

from saga.events import EventType, Health, NewEvent, SagaStatus
from saga.log.base import Append, NewSaga, SagaLog, SagaQuery


async def test_append_records_the_attempt_and_find_returns_it(any_log: SagaLog) -> None:
    started = NewEvent(
        type=EventType.SAGA_STARTED,
        data={"name": "s", "version": 1, "input": {}, "deadline_at_ms": None},
        at_ms=1000,
    )
    await any_log.create(NewSaga(saga_id="a", name="s", version=1, input={}, started=started))
    created = await any_log.get("a")
    assert created is not None
    assert created.attempt is None
    failed = NewEvent(type=EventType.STEP_FAILED, data={"step": "credit"}, at_ms=2000)
    await any_log.append([
        Append(
            saga_id="a", expected_seq=1, events=[failed], status=SagaStatus.RUNNING,
            current_step="credit", health=Health.RETRYING, attempt=3,
        )
    ])  # fmt: skip
    record = await any_log.get("a")
    assert record is not None
    assert (record.current_step, record.attempt, record.health) == ("credit", 3, Health.RETRYING)
    page = await any_log.find(SagaQuery(healths=[Health.RETRYING]))
    assert [(r.saga_id, r.attempt) for r in page.sagas] == [("a", 3)]
