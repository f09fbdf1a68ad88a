"""SagaQuery: the one filter of ``SagaLog.find``, checked when it is made, and its meaning."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from saga.errors import QueryError, SagaError
from saga.events import Health, SagaStatus
from saga.log.base import DEFAULT_QUERY, UNFINISHED, Page, SagaQuery, SagaRecord, TimeRange
from saga.log.paging import encode_cursor

T0 = 1_700_000_000_000


def record(saga_id: str = "s", **fields: object) -> SagaRecord:
    values: dict[str, object] = {
        "saga_id": saga_id, "name": "order", "version": 1, "status": SagaStatus.RUNNING,
        "input": {}, "created_ms": T0, "updated_ms": T0 + 10, "last_seq": 1,
        "current_step": "credit", "health": Health.RETRYING,
    }  # fmt: skip
    values.update(fields)
    return SagaRecord(**values)  # type: ignore[arg-type]


def test_a_query_is_frozen_and_keeps_its_sets_as_enums() -> None:
    query = SagaQuery(statuses=["running", SagaStatus.STUCK], healths=["stuck"])  # type: ignore[list-item]
    assert query.statuses == frozenset({SagaStatus.RUNNING, SagaStatus.STUCK})
    assert query.healths == frozenset({Health.STUCK})
    assert hash(query) == hash(
        SagaQuery(statuses=[SagaStatus.STUCK, SagaStatus.RUNNING], healths=[Health.STUCK])
    )
    with pytest.raises(FrozenInstanceError):
        query.limit = 5  # type: ignore[misc]
    assert SagaQuery(limit=100) == DEFAULT_QUERY
    assert UNFINISHED.statuses == {SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.STUCK}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"limit": 0}, "limit must be between 1 and 1000, got 0"),
        ({"limit": True}, "limit must be an int"),
        ({"cursor": "!!!"}, "invalid cursor '!!!'"),
        ({"cursor": "WzEsMiwzXQ"}, "invalid cursor 'WzEsMiwzXQ'"),
        ({"statuses": ["nope"]}, "statuses must be among running, compensating"),
        ({"statuses": "running"}, "statuses must be a collection of SagaStatus"),
        ({"healths": ["ill"]}, "healths must be among progressing"),
        ({"stalled_before_ms": 1.5}, "stalled_before_ms must be int milliseconds"),
        ({"created": (1, 2)}, "created and updated must be TimeRange"),
    ],
)
def test_a_bad_query_is_a_query_error_when_it_is_made(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(QueryError, match="^" + message.replace("(", r"\(")) as caught:
        SagaQuery(**fields)  # type: ignore[arg-type]
    assert isinstance(caught.value, SagaError)
    assert not isinstance(caught.value, ValueError)


def test_a_cursor_that_does_not_decode_keeps_its_cause() -> None:
    with pytest.raises(QueryError) as caught:
        SagaQuery(cursor="not a cursor")
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_time_range_with_bad_ends_is_a_query_error() -> None:
    with pytest.raises(QueryError, match="time range ends must be int milliseconds"):
        TimeRange(before_ms="soon")  # type: ignore[arg-type]


def test_matches_is_every_filter_at_once() -> None:
    r = record()
    assert SagaQuery().matches(r)
    assert SagaQuery(statuses=[SagaStatus.RUNNING], name="order", current_step="credit").matches(r)
    assert not SagaQuery(statuses=[]).matches(r)
    assert not SagaQuery(name="travel").matches(r)
    assert not SagaQuery(current_step="ship").matches(r)
    assert SagaQuery(healths=[Health.RETRYING]).matches(r)
    assert not SagaQuery(healths=[Health.STUCK]).matches(r)
    # Not updated since T0 + 11: it has stalled, so it counts as stuck.
    assert SagaQuery(healths=[Health.STUCK], stalled_before_ms=T0 + 11).matches(r)
    assert not SagaQuery(healths=[Health.RETRYING], stalled_before_ms=T0 + 11).matches(r)
    assert SagaQuery(created=TimeRange(since_ms=T0, before_ms=T0 + 1)).matches(r)
    assert not SagaQuery(created=TimeRange(since_ms=T0 + 1)).matches(r)
    assert not SagaQuery(updated=TimeRange(before_ms=T0 + 10)).matches(r)
    finished = record(status=SagaStatus.COMPLETED, health=None)
    assert not SagaQuery(healths=list(Health), stalled_before_ms=T0 + 99).matches(finished)


def test_pages_follow_their_cursor() -> None:
    query = SagaQuery(name="order", limit=2)
    assert query.after is None
    found = [record("c", created_ms=T0 + 2), record("b", created_ms=T0 + 1), record("a")]
    page = Page.of(found, query.limit)
    assert [r.saga_id for r in page.sagas] == ["c", "b"]
    assert page.next_cursor == encode_cursor(T0 + 1, "b")
    following = query.next_page(page)
    assert following == SagaQuery(name="order", limit=2, cursor=page.next_cursor)
    assert following is not None
    assert following.after == (T0 + 1, "b")
    last = Page.of(found[2:], query.limit)
    assert last.next_cursor is None
    assert following.next_page(last) is None
