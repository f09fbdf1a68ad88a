"""SagaLogContract: the behaviour every SagaLog must show, as a reusable pytest suite.

Subclass it in a test module, in a class whose name starts with ``Test``, and provide a
``log`` fixture that yields an open, empty log (and closes it afterwards)::

    class TestMySagaLog(SagaLogContract):
        @pytest.fixture
        async def log(self) -> AsyncIterator[SagaLog]:
            log = MySagaLog(...)
            await log.open()
            yield log
            await log.close()

The tests are coroutines and need pytest-asyncio (``asyncio_mode = "auto"``, or mark the
fixture with ``@pytest_asyncio.fixture`` in strict mode). The suite runs against
InMemorySagaLog, and SqlSagaLog on SQLite and on PostgreSQL, in this project's own tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from saga.engine.payloads import SagaStarted, new_event
from saga.errors import ConcurrencyError, LogError, QueryError, SagaNotFoundError
from saga.events import EVENT_FORMAT, Event, EventType, Health, JsonObject, NewEvent, SagaStatus
from saga.log.base import Append, NewSaga, SagaLog, SagaQuery, SagaRecord, TimeRange
from saga.testing.log_contract_ops import SearchAndTallyContract

T0 = 1_700_000_000_000
"""An arbitrary epoch-millisecond start time for the sagas the tests create."""

ODD_DATA: JsonObject = {
    "nested": {"a": {"b": {"c": [1, 2, {"d": None}]}}},
    "list": [1, "two", 3.5, True, False, None, [], {}],
    "unicode": 'naïve café ☃ 日本語 🎉 \u00e9\u0301 \t\n"quoted" \\ back',
    "big": 2**63 + 1,
    "bigger": -(2**80),
    "float": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "empty": "",
    "zero": 0,
    "ключ 🔑": "unicode key",
}


def new_saga(
    saga_id: str,
    *,
    name: str = "order",
    version: int = 1,
    at_ms: int = T0,
    input: JsonObject | None = None,
) -> NewSaga:
    """A NewSaga with a saga_started event, for tests."""
    data = {} if input is None else input
    return NewSaga(
        saga_id=saga_id,
        name=name,
        version=version,
        input=data,
        started=new_event(SagaStarted(name=name, version=version, input=data), at_ms),
    )


def step_sent(step: str, at_ms: int, **extra: Any) -> NewEvent:
    """A step_sent event, for tests: the low-level form, since a log stores whatever JSON object
    it is given (only the engine reads it as a typed payload)."""
    return NewEvent(type=EventType.STEP_SENT, data={"step": step, **extra}, at_ms=at_ms)


def advance(
    saga_id: str,
    expected_seq: int,
    *events: NewEvent,
    status: SagaStatus = SagaStatus.RUNNING,
    current_step: str | None = None,
    health: Health | None = None,
    waiting_for: str | None = None,
    due_ms: int | None = None,
) -> Append:
    """An Append, for tests."""
    return Append(
        saga_id=saga_id,
        expected_seq=expected_seq,
        events=list(events),
        status=status,
        current_step=current_step,
        health=health,
        waiting_for=waiting_for,
        due_ms=due_ms,
    )


def _summary(events: list[Event]) -> list[tuple[int, EventType, JsonObject, int]]:
    return [(e.seq, e.type, e.data, e.at_ms) for e in events]


class SagaLogContract(SearchAndTallyContract):
    """Contract tests for a SagaLog; subclasses provide the ``log`` fixture (search, tally
    and done-by-hand tests come from ``SearchAndTallyContract``)."""

    pytestmark = pytest.mark.asyncio

    # -- create, get, events ------------------------------------------------------------

    async def test_create_then_get_and_events(self, log: SagaLog) -> None:
        saga = new_saga("s-1", name="order", version=3, at_ms=T0, input={"order": 7})
        record, created = await log.create(saga)
        assert created
        expected = SagaRecord(
            saga_id="s-1",
            name="order",
            version=3,
            status=SagaStatus.RUNNING,
            input={"order": 7},
            created_ms=T0,
            updated_ms=T0,
            last_seq=1,
            current_step=None,
            health=Health.PROGRESSING,
        )
        assert record == expected
        assert await log.get("s-1") == expected
        events = await log.events("s-1")
        assert events == [
            Event(
                saga_id="s-1",
                seq=1,
                type=EventType.SAGA_STARTED,
                data=saga.started.data,
                at_ms=T0,
                format=EVENT_FORMAT,
            )
        ]
        assert isinstance(events[0].type, EventType)
        got = await log.get("s-1")
        assert got is not None
        assert isinstance(got.status, SagaStatus)

    async def test_unknown_saga_is_none_and_has_no_events(self, log: SagaLog) -> None:
        assert await log.get("nope") is None
        assert await log.events("nope") == []

    async def test_create_twice_returns_existing_and_writes_nothing(self, log: SagaLog) -> None:
        first, created = await log.create(new_saga("dup", input={"n": 1}))
        assert created
        again, created_again = await log.create(
            new_saga("dup", name="other", version=9, at_ms=T0 + 5, input={"n": 2})
        )
        assert not created_again
        assert again == first
        assert await log.get("dup") == first
        assert len(await log.events("dup")) == 1
        assert (await log.events("dup"))[0].data["input"] == {"n": 1}

    async def test_concurrent_creates_of_one_id_create_it_once(self, log: SagaLog) -> None:
        results = await asyncio.gather(
            *(log.create(new_saga("race", input={"who": i})) for i in range(5))
        )
        assert sum(created for _, created in results) == 1
        winner = next(record for record, created in results if created)
        assert all(record == winner for record, _ in results)
        assert len(await log.events("race")) == 1

    @pytest.mark.parametrize("many", [False, True])
    async def test_create_records_the_first_decision_in_the_same_write(
        self, log: SagaLog, many: bool
    ) -> None:
        first = replace(
            new_saga("with-step", input={"n": 1}),
            events=[step_sent("a", T0 + 1), step_sent("b", T0 + 2)],
            current_step="b",
            health=Health.RETRYING,
            attempt=2,
        )
        plain = new_saga("plain")
        if many:
            results = await log.create_many([first, plain])
        else:
            results = [await log.create(first), await log.create(plain)]
        assert [created for _, created in results] == [True, True]
        record = results[0][0]
        assert (record.last_seq, record.current_step, record.attempt) == (3, "b", 2)
        assert (record.health, record.updated_ms, record.created_ms) == (
            Health.RETRYING, T0 + 2, T0,
        )  # fmt: skip
        assert await log.get("with-step") == record
        events = await log.events("with-step")
        assert [(e.seq, e.data.get("step")) for e in events] == [(1, None), (2, "a"), (3, "b")]
        assert events[0].type is EventType.SAGA_STARTED
        assert (await log.get("plain")) == results[1][0]
        assert results[1][0].last_seq == 1
        # The next writer continues from the last of those events.
        await log.append([advance("with-step", 3, step_sent("c", T0 + 3))])
        assert [e.seq for e in await log.events("with-step")] == [1, 2, 3, 4]

    async def test_create_of_a_taken_id_writes_none_of_its_events(self, log: SagaLog) -> None:
        await log.create(new_saga("taken"))
        again = replace(new_saga("taken"), events=[step_sent("a", T0 + 1)], current_step="a")
        record, created = await log.create(again)
        assert not created
        assert record.last_seq == 1
        assert len(await log.events("taken")) == 1

    async def test_events_many_reads_each_saga_in_order(self, log: SagaLog) -> None:
        for saga_id in ("m-1", "m-2", "m-3"):
            await log.create(new_saga(saga_id))
        await log.append([advance("m-2", 1, step_sent("a", T0 + 1), step_sent("b", T0 + 2))])
        found = await log.events_many(["m-2", "m-1", "missing", "m-2"])
        assert set(found) == {"m-1", "m-2", "missing"}
        assert found["missing"] == []
        assert found["m-1"] == await log.events("m-1")
        assert found["m-2"] == await log.events("m-2")
        assert [e.seq for e in found["m-2"]] == [1, 2, 3]

    async def test_stored_data_cannot_be_mutated_by_callers(self, log: SagaLog) -> None:
        data: JsonObject = {"items": [1, 2], "meta": {"k": "v"}}
        saga = new_saga("iso", input=data)
        record, _ = await log.create(saga)
        data["items"].append(3)
        saga.started.data["extra"] = True
        record.input["meta"]["k"] = "changed"
        events = await log.events("iso")
        events[0].data["input"]["items"].append(99)
        got = await log.get("iso")
        assert got is not None
        assert got.input == {"items": [1, 2], "meta": {"k": "v"}}
        assert (await log.events("iso"))[0].data["input"] == {"items": [1, 2], "meta": {"k": "v"}}

    # -- append -------------------------------------------------------------------------

    async def test_append_assigns_contiguous_seqs(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        await log.append([advance("s", 1, step_sent("a", T0 + 1), step_sent("b", T0 + 2))])
        await log.append(
            [advance("s", 3, step_sent("c", T0 + 3), current_step="c")],
        )
        events = await log.events("s")
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert [e.data.get("step") for e in events] == [None, "a", "b", "c"]
        assert all(e.saga_id == "s" for e in events)
        record = await log.get("s")
        assert record is not None
        assert record.last_seq == 4
        assert record.current_step == "c"
        assert record.updated_ms == T0 + 3
        assert record.created_ms == T0

    async def test_append_sets_status_and_current_step(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        done = NewEvent(type=EventType.SAGA_COMPLETED, data={"results": {}}, at_ms=T0 + 9)
        await log.append([advance("s", 1, done, status=SagaStatus.COMPLETED, current_step=None)])
        record = await log.get("s")
        assert record is not None
        assert record.status is SagaStatus.COMPLETED
        assert record.current_step is None
        assert (await log.events("s"))[-1].type is EventType.SAGA_COMPLETED

    async def test_append_without_events_updates_the_row_only(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        await log.append([advance("s", 1, status=SagaStatus.STUCK, current_step="pay")])
        record = await log.get("s")
        assert record is not None
        assert (record.status, record.current_step, record.last_seq) == (
            SagaStatus.STUCK,
            "pay",
            1,
        )
        assert record.updated_ms == T0
        assert len(await log.events("s")) == 1
        with pytest.raises(ConcurrencyError):
            await log.append([advance("s", 0, status=SagaStatus.RUNNING)])

    async def test_append_empty_batch_is_a_no_op(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        await log.append([])
        assert len(await log.events("s")) == 1

    async def test_append_batch_spans_sagas_in_one_go(self, log: SagaLog) -> None:
        for saga_id in ("b", "a", "c"):
            await log.create(new_saga(saga_id))
        await log.append(
            [
                advance("b", 1, step_sent("x", T0 + 1)),
                advance("a", 1, step_sent("y", T0 + 2), step_sent("z", T0 + 3)),
                advance("c", 1, status=SagaStatus.COMPENSATING),
            ]
        )
        assert [e.seq for e in await log.events("a")] == [1, 2, 3]
        assert [e.seq for e in await log.events("b")] == [1, 2]
        assert [e.seq for e in await log.events("c")] == [1]
        record = await log.get("c")
        assert record is not None
        assert record.status is SagaStatus.COMPENSATING

    async def test_append_same_saga_twice_in_one_batch(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        await log.append(
            [
                advance("s", 1, step_sent("a", T0 + 1), step_sent("b", T0 + 2)),
                advance("s", 3, step_sent("c", T0 + 3), current_step="c"),
            ]
        )
        assert [e.data.get("step") for e in await log.events("s", after_seq=1)] == ["a", "b", "c"]
        record = await log.get("s")
        assert record is not None
        assert (record.last_seq, record.current_step) == (4, "c")

    async def test_stale_append_raises_and_writes_nothing(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        await log.append([advance("s", 1, step_sent("a", T0 + 1))])
        before = await log.get("s")
        with pytest.raises(ConcurrencyError) as caught:
            await log.append([advance("s", 1, step_sent("b", T0 + 2), status=SagaStatus.STUCK)])
        assert caught.value.saga_id == "s"
        assert isinstance(caught.value, LogError)
        assert await log.get("s") == before
        assert [e.data.get("step") for e in await log.events("s")] == [None, "a"]

    async def test_ahead_of_time_append_raises_concurrency_error(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        with pytest.raises(ConcurrencyError):
            await log.append([advance("s", 5, step_sent("a", T0 + 1))])
        assert len(await log.events("s")) == 1

    @pytest.mark.parametrize("stale_first", [False, True])
    async def test_stale_saga_in_batch_rolls_back_the_others(
        self, log: SagaLog, stale_first: bool
    ) -> None:
        # Ids chosen so the stale saga sorts both after and before the good one.
        good, stale = ("b", "a") if stale_first else ("a", "b")
        await log.create(new_saga(good))
        await log.create(new_saga(stale))
        await log.append([advance(stale, 1, step_sent("moved", T0 + 1))])
        good_before, stale_before = await log.get(good), await log.get(stale)
        with pytest.raises(ConcurrencyError) as caught:
            await log.append(
                [
                    advance(good, 1, step_sent("x", T0 + 2), status=SagaStatus.COMPENSATING),
                    advance(stale, 1, step_sent("y", T0 + 3)),
                ]
            )
        assert caught.value.saga_id == stale
        assert await log.get(good) == good_before
        assert await log.get(stale) == stale_before
        assert len(await log.events(good)) == 1
        assert len(await log.events(stale)) == 2

    async def test_append_to_unknown_saga_raises_not_found(self, log: SagaLog) -> None:
        await log.create(new_saga("known"))
        with pytest.raises(SagaNotFoundError) as caught:
            await log.append(
                [
                    advance("known", 1, step_sent("x", T0 + 1)),
                    advance("ghost", 1, step_sent("y", T0 + 2)),
                ]
            )
        assert caught.value.saga_id == "ghost"
        assert await log.get("ghost") is None
        assert await log.events("ghost") == []
        assert len(await log.events("known")) == 1
        record = await log.get("known")
        assert record is not None
        assert record.last_seq == 1

    async def test_concurrent_appends_to_one_saga_exactly_one_wins(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        contenders = 5
        results = await asyncio.gather(
            *(
                log.append([advance("s", 1, step_sent(f"t{i}", T0 + i), step_sent("z", T0 + i))])
                for i in range(contenders)
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == contenders - 1
        assert all(isinstance(f, ConcurrencyError) for f in failures)
        winner = next(i for i, r in enumerate(results) if r is None)
        events = await log.events("s")
        assert [e.seq for e in events] == [1, 2, 3]
        assert [e.data["step"] for e in events[1:]] == [f"t{winner}", "z"]
        record = await log.get("s")
        assert record is not None
        assert record.last_seq == 3

    async def test_events_after_seq(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        await log.append([advance("s", 1, *(step_sent(f"s{i}", T0 + i) for i in range(2, 6)))])
        assert [e.seq for e in await log.events("s")] == [1, 2, 3, 4, 5]
        assert [e.seq for e in await log.events("s", after_seq=0)] == [1, 2, 3, 4, 5]
        assert [e.seq for e in await log.events("s", after_seq=3)] == [4, 5]
        assert await log.events("s", after_seq=5) == []
        assert await log.events("s", after_seq=50) == []

    # -- data ---------------------------------------------------------------------------

    async def test_json_data_round_trips_unchanged(self, log: SagaLog) -> None:
        await log.create(new_saga("json", input=ODD_DATA))
        event = NewEvent(type=EventType.STEP_SUCCEEDED, data={"result": ODD_DATA}, at_ms=T0 + 1)
        await log.append([advance("json", 1, event)])
        record = await log.get("json")
        assert record is not None
        assert record.input == ODD_DATA
        events = await log.events("json")
        assert events[0].data["input"] == ODD_DATA
        assert events[1].data == {"result": ODD_DATA}
        assert type(events[1].data["result"]["big"]) is int
        assert type(events[1].data["result"]["float"]) is float
        page = await log.find(SagaQuery(name="order"))
        assert page.sagas[0].input == ODD_DATA

    async def test_events_keep_the_format_they_were_written_in(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        later = NewEvent(type=EventType.STEP_SENT, data={"step": "a"}, at_ms=T0 + 1, format=2)
        await log.append([advance("s", 1, later, step_sent("b", T0 + 2))])
        events = await log.events("s")
        assert [e.format for e in events] == [EVENT_FORMAT, 2, EVENT_FORMAT]

    async def test_non_json_data_raises_log_error_and_writes_nothing(self, log: SagaLog) -> None:
        with pytest.raises(LogError):
            await log.create(new_saga("bad", input={"when": object()}))
        assert await log.get("bad") is None
        await log.create(new_saga("s"))
        with pytest.raises(LogError):
            await log.append([advance("s", 1, step_sent("x", T0 + 1, value=float("nan")))])
        assert len(await log.events("s")) == 1

    async def test_large_timestamps_and_versions(self, log: SagaLog) -> None:
        far = 2**53 + 1  # beyond a 32-bit column and a float's exact range
        await log.create(new_saga("t", version=2**31 - 1, at_ms=far))
        await log.append([advance("t", 1, step_sent("x", far + 1))])
        record = await log.get("t")
        assert record is not None
        assert (record.version, record.created_ms, record.updated_ms) == (2**31 - 1, far, far + 1)
        assert (await log.events("t"))[1].at_ms == far + 1

    # -- find and unfinished ------------------------------------------------------------

    async def test_find_newest_first_with_filters(self, log: SagaLog) -> None:
        await log.create(new_saga("o1", name="order", at_ms=T0 + 1))
        await log.create(new_saga("t1", name="travel", at_ms=T0 + 2))
        await log.create(new_saga("o2", name="order", at_ms=T0 + 3))
        await log.create(new_saga("o3", name="order", at_ms=T0 + 4))
        await log.append([advance("o2", 1, status=SagaStatus.COMPLETED)])

        def ids(records: list[SagaRecord]) -> list[str]:
            return [r.saga_id for r in records]

        assert ids((await log.find()).sagas) == ["o3", "o2", "t1", "o1"]
        assert ids((await log.find(SagaQuery(name="order"))).sagas) == ["o3", "o2", "o1"]
        assert ids((await log.find(SagaQuery(name="nobody"))).sagas) == []
        running = await log.find(SagaQuery(statuses=[SagaStatus.RUNNING]))
        assert ids(running.sagas) == ["o3", "t1", "o1"]
        assert running.next_cursor is None
        both = await log.find(
            SagaQuery(statuses=[SagaStatus.COMPLETED, SagaStatus.RUNNING], name="order")
        )
        assert ids(both.sagas) == ["o3", "o2", "o1"]
        assert (
            ids((await log.find(SagaQuery(statuses=[SagaStatus.COMPLETED], name="travel"))).sagas)
            == []
        )
        assert ids((await log.find(SagaQuery(statuses=[]))).sagas) == []

    async def test_find_pages_yield_every_saga_once_newest_first(self, log: SagaLog) -> None:
        created: list[tuple[int, str]] = []
        for i in range(23):
            # Several sagas share a created_ms: ties are ordered by saga_id, descending.
            at_ms = T0 + i // 3
            saga_id = f"saga-{(i * 7) % 23:02d}"
            await log.create(new_saga(saga_id, at_ms=at_ms))
            created.append((at_ms, saga_id))
        expected = [saga_id for _, saga_id in sorted(created, reverse=True)]
        for limit in (1, 4, 5, 23, 100):
            seen: list[str] = []
            cursor: str | None = None
            pages = 0
            while True:
                page = await log.find(SagaQuery(limit=limit, cursor=cursor))
                pages += 1
                assert len(page.sagas) <= limit
                seen.extend(r.saga_id for r in page.sagas)
                if page.next_cursor is None:
                    break
                assert len(page.sagas) == limit
                cursor = page.next_cursor
            assert seen == expected, f"limit={limit}"
            assert pages == max(1, -(-23 // limit)), f"limit={limit}"

    async def test_find_pages_with_a_status_filter(self, log: SagaLog) -> None:
        for i in range(10):
            await log.create(new_saga(f"s{i}", at_ms=T0 + i))
        await log.append(
            [advance(f"s{i}", 1, status=SagaStatus.COMPENSATED) for i in range(0, 10, 2)]
        )
        first = await log.find(SagaQuery(statuses=[SagaStatus.RUNNING], limit=3))
        assert [r.saga_id for r in first.sagas] == ["s9", "s7", "s5"]
        assert first.next_cursor is not None
        second = await log.find(
            SagaQuery(statuses=[SagaStatus.RUNNING], limit=3, cursor=first.next_cursor)
        )
        assert [r.saga_id for r in second.sagas] == ["s3", "s1"]
        assert second.next_cursor is None

    async def test_exact_multiple_of_limit_ends_without_an_empty_page(self, log: SagaLog) -> None:
        for i in range(4):
            await log.create(new_saga(f"s{i}", at_ms=T0 + i))
        first = await log.find(SagaQuery(limit=2))
        assert first.next_cursor is not None
        second = await log.find(SagaQuery(limit=2, cursor=first.next_cursor))
        assert [r.saga_id for r in second.sagas] == ["s1", "s0"]
        assert second.next_cursor is None

    async def test_find_on_an_empty_log(self, log: SagaLog) -> None:
        page = await log.find()
        assert page.sagas == []
        assert page.next_cursor is None

    @pytest.mark.parametrize("limit", [0, -1, 1001])
    async def test_find_rejects_a_bad_limit(self, log: SagaLog, limit: int) -> None:
        with pytest.raises(QueryError, match="limit"):
            await log.find(SagaQuery(limit=limit))

    @pytest.mark.parametrize("cursor", ["", "not a cursor", "!!!", "bnVsbA", "WzEsMiwzXQ"])
    async def test_find_rejects_a_bad_cursor(self, log: SagaLog, cursor: str) -> None:
        with pytest.raises(QueryError, match="cursor"):
            await log.find(SagaQuery(cursor=cursor))

    async def test_append_stores_health(self, log: SagaLog) -> None:
        await log.create(new_saga("h"))
        await log.append([advance("h", 1, step_sent("pay", T0 + 1), health=Health.RETRYING)])
        record = await log.get("h")
        assert record is not None
        assert record.health is Health.RETRYING
        assert isinstance(record.health, Health)
        done = NewEvent(type=EventType.SAGA_COMPLETED, data={"results": {}}, at_ms=T0 + 2)
        await log.append([advance("h", 2, done, status=SagaStatus.COMPLETED, health=None)])
        record = await log.get("h")
        assert record is not None
        assert record.health is None

    async def _shop_of_sagas(self, log: SagaLog) -> None:
        """Five sagas with different health, steps and times (created T0+0..4)."""
        rows = [
            ("p", Health.PROGRESSING, "create", 10),
            ("r", Health.RETRYING, "credit", 20),
            ("w", Health.WAITING, "credit", 30),
            ("n", Health.NEEDS_ATTENTION, "ship", 40),
            ("s", Health.STUCK, "credit", 50),
        ]
        for i, (saga_id, health, step, updated) in enumerate(rows):
            await log.create(new_saga(saga_id, at_ms=T0 + i))
            status = SagaStatus.STUCK if health is Health.STUCK else SagaStatus.RUNNING
            await log.append(
                [
                    advance(
                        saga_id, 1, step_sent(step, T0 + updated),
                        status=status, current_step=step, health=health,
                    )
                ]
            )  # fmt: skip
        await log.create(new_saga("done", at_ms=T0 + 5))
        finished = NewEvent(type=EventType.SAGA_COMPLETED, data={"results": {}}, at_ms=T0 + 60)
        await log.append([advance("done", 1, finished, status=SagaStatus.COMPLETED)])

    async def test_find_by_health_step_and_time(self, log: SagaLog) -> None:
        await self._shop_of_sagas(log)

        async def ids(**filters: Any) -> list[str]:
            return [r.saga_id for r in (await log.find(SagaQuery(**filters))).sagas]

        assert await ids(healths=[Health.RETRYING]) == ["r"]
        assert await ids(healths=[Health.STUCK, Health.WAITING]) == ["s", "w"]
        assert await ids(healths=[]) == []
        assert await ids(current_step="credit") == ["s", "w", "r"]
        assert await ids(current_step="credit", healths=[Health.WAITING]) == ["w"]
        assert await ids(current_step="nowhere") == []
        assert await ids(created=TimeRange(since_ms=T0 + 1, before_ms=T0 + 3)) == ["w", "r"]
        assert await ids(created=TimeRange(since_ms=T0 + 4)) == ["done", "s"]
        assert await ids(created=TimeRange(before_ms=T0 + 1)) == ["p"]
        assert await ids(updated=TimeRange(since_ms=T0 + 30, before_ms=T0 + 50)) == ["n", "w"]
        assert await ids(updated=TimeRange(since_ms=T0 + 60)) == ["done"]
        assert await ids(updated=TimeRange(before_ms=T0 + 11), name="order") == ["p"]
        assert await ids(statuses=[SagaStatus.RUNNING], updated=TimeRange(since_ms=T0 + 40)) == [
            "n"
        ]

    async def test_stalled_sagas_count_as_stuck(self, log: SagaLog) -> None:
        await self._shop_of_sagas(log)

        async def ids(healths: list[Health], stalled_before_ms: int) -> list[str]:
            page = await log.find(SagaQuery(healths=healths, stalled_before_ms=stalled_before_ms))
            return [r.saga_id for r in page.sagas]

        # Not updated since T0+35: p, r and w have stalled; the finished saga never stalls.
        assert await ids([Health.STUCK], T0 + 35) == ["s", "w", "r", "p"]
        assert await ids([Health.RETRYING, Health.NEEDS_ATTENTION], T0 + 35) == ["n"]
        assert await ids([Health.STUCK], T0) == ["s"]
        assert await ids([Health.PROGRESSING], T0 + 1000) == []
        assert await ids([Health.STUCK], T0 + 1000) == ["s", "n", "w", "r", "p"]

    async def test_find_returns_what_the_query_matches(self, log: SagaLog) -> None:
        """``SagaQuery.matches`` is the filter's meaning: the log's own query agrees with it."""
        await self._shop_of_sagas(log)
        every = (await log.find(SagaQuery(limit=1000))).sagas
        queries = [
            SagaQuery(statuses=[SagaStatus.STUCK, SagaStatus.COMPLETED]),
            SagaQuery(healths=[Health.STUCK], stalled_before_ms=T0 + 35),
            SagaQuery(healths=[Health.WAITING, Health.RETRYING], current_step="credit"),
            SagaQuery(name="order", updated=TimeRange(since_ms=T0 + 20, before_ms=T0 + 60)),
            SagaQuery(created=TimeRange(since_ms=T0 + 2), statuses=[SagaStatus.RUNNING]),
        ]
        for query in queries:
            found = [r.saga_id for r in (await log.find(query)).sagas]
            assert found == [r.saga_id for r in every if query.matches(r)], query

    async def test_find_pages_with_health_filters(self, log: SagaLog) -> None:
        for i in range(7):
            await log.create(new_saga(f"s{i}", at_ms=T0 + i))
            await log.append([advance(f"s{i}", 1, status=SagaStatus.STUCK, health=Health.STUCK)])
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await log.find(SagaQuery(healths=[Health.STUCK], limit=3, cursor=cursor))
            seen.extend(r.saga_id for r in page.sagas)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [f"s{i}" for i in reversed(range(7))]

    async def test_time_range_checks_its_ends(self, log: SagaLog) -> None:
        with pytest.raises(QueryError, match="milliseconds"):
            TimeRange(since_ms=1.5)  # type: ignore[arg-type]
        assert 5 in TimeRange(since_ms=5, before_ms=6)
        assert 6 not in TimeRange(since_ms=5, before_ms=6)
        assert 1 in TimeRange()

    async def test_unfinished_returns_running_compensating_and_stuck(self, log: SagaLog) -> None:
        statuses = {
            "r": SagaStatus.RUNNING,
            "c": SagaStatus.COMPENSATING,
            "s": SagaStatus.STUCK,
            "done": SagaStatus.COMPLETED,
            "undone": SagaStatus.COMPENSATED,
        }
        for i, (saga_id, status) in enumerate(statuses.items()):
            await log.create(new_saga(saga_id, at_ms=T0 + i))
            if status is not SagaStatus.RUNNING:
                await log.append([advance(saga_id, 1, status=status)])
        unfinished = await log.unfinished()
        assert sorted(r.saga_id for r in unfinished) == ["c", "r", "s"]
        assert {r.saga_id: r.status for r in unfinished} == {
            "r": SagaStatus.RUNNING,
            "c": SagaStatus.COMPENSATING,
            "s": SagaStatus.STUCK,
        }

    async def test_unfinished_on_an_empty_log(self, log: SagaLog) -> None:
        assert await log.unfinished() == []

    # -- what a saga waits for, and when it is due ---------------------------------------

    @pytest.mark.parametrize("many", [False, True])
    async def test_create_stores_what_the_saga_waits_for_and_when_it_is_due(
        self, log: SagaLog, many: bool
    ) -> None:
        due = T0 + 2 * 86_400_000  # a two-day wait: past what 32 bits hold
        waiting = replace(
            new_saga("waits"),
            events=[step_sent("approval", T0 + 1)],
            current_step="approval",
            waiting_for="manager_approved",
            due_ms=due,
        )
        plain = new_saga("plain", at_ms=T0 + 1)
        if many:
            results = await log.create_many([waiting, plain])
        else:
            results = [await log.create(waiting), await log.create(plain)]
        [(record, created), (other, _)] = results
        assert created
        assert (record.waiting_for, record.due_ms) == ("manager_approved", due)
        assert (other.waiting_for, other.due_ms) == (None, None)
        assert await log.get("waits") == record
        assert await log.get("plain") == other
        # A repeated start answers with the stored row, as it was.
        again, created = await log.create(replace(waiting, waiting_for=None, due_ms=None))
        assert not created
        assert (again.waiting_for, again.due_ms) == ("manager_approved", due)

    async def test_append_moves_what_the_saga_waits_for_and_when_it_is_due(
        self, log: SagaLog
    ) -> None:
        for i, saga_id in enumerate(("a", "b", "c")):
            await log.create(new_saga(saga_id, at_ms=T0 + i))
        # One group commit: a saga starts waiting, another's long-running step is accepted
        # (a deadline, no event), the third neither.
        await log.append(
            [
                advance("a", 1, step_sent("approval", T0 + 10), waiting_for="ok", due_ms=T0 + 99),
                advance("b", 1, step_sent("ship", T0 + 11), due_ms=T0 + 2**40),
                advance("c", 1, step_sent("pay", T0 + 12)),
            ]
        )

        async def rows() -> dict[str, tuple[str | None, int | None]]:
            found = {}
            for saga_id in ("a", "b", "c"):
                record = await log.get(saga_id)
                assert record is not None
                found[saga_id] = (record.waiting_for, record.due_ms)
            return found

        assert await rows() == {"a": ("ok", T0 + 99), "b": (None, T0 + 2**40), "c": (None, None)}
        # The next appends say what holds after them: the event came, the deadline moved on.
        await log.append(
            [
                advance("a", 2, step_sent("ship", T0 + 20)),
                advance("b", 2, step_sent("ship", T0 + 21), due_ms=T0 + 2**41),
                advance("c", 2, waiting_for="ok", due_ms=T0 + 50),
            ]
        )
        assert await rows() == {"a": (None, None), "b": (None, T0 + 2**41), "c": ("ok", T0 + 50)}
        page = await log.find(SagaQuery(limit=10))
        assert {r.saga_id: (r.waiting_for, r.due_ms) for r in page.sagas} == await rows()

    async def test_a_refused_append_leaves_what_the_saga_waits_for(self, log: SagaLog) -> None:
        await log.create(replace(new_saga("s"), waiting_for="ok", due_ms=T0 + 5))
        with pytest.raises(ConcurrencyError):
            await log.append([advance("s", 7, step_sent("x", T0 + 1), due_ms=T0 + 9)])
        record = await log.get("s")
        assert record is not None
        assert (record.waiting_for, record.due_ms, record.last_seq) == ("ok", T0 + 5, 1)

    async def test_find_by_what_sagas_wait_for(self, log: SagaLog) -> None:
        waits = {"w1": "approved", "w2": "paid", "w3": "approved", "n": None, "w4": "approved"}
        for i, (saga_id, event) in enumerate(waits.items()):
            await log.create(new_saga(saga_id, at_ms=T0 + i))
            await log.append(
                [advance(saga_id, 1, step_sent("s", T0 + 10), waiting_for=event, due_ms=T0 + 99)]
            )
        await log.append([advance("w4", 2, status=SagaStatus.STUCK, waiting_for="approved")])

        async def ids(**filters: Any) -> list[str]:
            return [r.saga_id for r in (await log.find(SagaQuery(**filters))).sagas]

        assert await ids(waiting_for="approved") == ["w4", "w3", "w1"]
        assert await ids(waiting_for="paid") == ["w2"]
        assert await ids(waiting_for="nothing_yet") == []
        assert await ids(waiting_for="approved", statuses=[SagaStatus.RUNNING]) == ["w3", "w1"]
        assert await ids(waiting_for="approved", created=TimeRange(before_ms=T0 + 1)) == ["w1"]
        # Pages of a waiting_for filter yield each match once, newest first.
        seen: list[str] = []
        query: SagaQuery | None = SagaQuery(waiting_for="approved", limit=2)
        while query is not None:
            page = await log.find(query)
            seen.extend(r.saga_id for r in page.sagas)
            query = query.next_page(page)
        assert seen == ["w4", "w3", "w1"]
        # The log's query agrees with SagaQuery.matches.
        every = (await log.find(SagaQuery(limit=1000))).sagas
        for query in (SagaQuery(waiting_for="approved"), SagaQuery(waiting_for="paid")):
            found = [r.saga_id for r in (await log.find(query)).sagas]
            assert found == [r.saga_id for r in every if query.matches(r)], query

    @pytest.mark.parametrize("event", ["", "has space", "a/b", "x" * 201, "é", "ok\n"])
    async def test_find_rejects_a_waiting_for_that_is_no_event_name(
        self, log: SagaLog, event: str
    ) -> None:
        with pytest.raises(QueryError, match="waiting_for"):
            await log.find(SagaQuery(waiting_for=event))

    # -- lifecycle ----------------------------------------------------------------------

    async def test_close_is_idempotent_and_a_closed_log_refuses_work(self, log: SagaLog) -> None:
        await log.create(new_saga("s"))
        await log.close()
        await log.close()
        with pytest.raises(LogError):
            await log.get("s")
        with pytest.raises(LogError):
            await log.append([advance("s", 1, step_sent("x", T0 + 1))])
