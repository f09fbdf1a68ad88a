"""The SagaLog contract for what operators read: search (ids, prefixes, input fields), the
tally behind ``GET /api/stats``, and which sagas were done by hand.

``SagaLogContract`` includes these tests; they are a module of their own to keep each
readable in one sitting.
"""

from __future__ import annotations

from typing import Any

import pytest

from saga.engine.payloads import SagaStarted, new_event
from saga.errors import QueryError
from saga.events import EventType, Health, JsonObject, NewEvent, SagaStatus
from saga.log.base import Append, NewSaga, SagaLog, SagaQuery
from saga.log.paging import MAX_PAGE_SIZE
from saga.log.tally import MINUTE_MS

W0 = 1_700_000_040_000
"""A minute boundary to start windows at (``T0`` of the main contract is not one)."""


def _new(
    saga_id: str, *, name: str = "order", at_ms: int = W0, input: JsonObject | None = None
) -> NewSaga:
    data = {} if input is None else input
    started = new_event(SagaStarted(name=name, version=1, input=data), at_ms)
    return NewSaga(saga_id=saga_id, name=name, version=1, input=data, started=started)


def _advance(saga_id: str, expected_seq: int, *events: NewEvent, **row: Any) -> Append:
    row.setdefault("status", SagaStatus.RUNNING)
    return Append(saga_id=saga_id, expected_seq=expected_seq, events=list(events), **row)


def _event(kind: EventType, at_ms: int, **data: Any) -> NewEvent:
    return NewEvent(type=kind, data=data, at_ms=at_ms)


class SearchAndTallyContract:
    """Search, tally and done-by-hand tests for a SagaLog; subclasses provide ``log``."""

    pytestmark = pytest.mark.asyncio

    # -- search ----------------------------------------------------------------------------

    async def _ids(self, log: SagaLog, **filters: Any) -> list[str]:
        return [r.saga_id for r in await log.find_all(SagaQuery(**filters))]

    async def test_find_by_id_and_id_prefix(self, log: SagaLog) -> None:
        for i, saga_id in enumerate(["a-1", "a-10", "a-2", "a.1", "b-1", "a-"]):
            await log.create(_new(saga_id, at_ms=W0 + i))
        assert await self._ids(log, saga_id="a-1") == ["a-1"]
        assert await self._ids(log, saga_id="a-3") == []
        assert await self._ids(log, saga_id_prefix="a-1") == ["a-10", "a-1"]
        assert await self._ids(log, saga_id_prefix="a-") == ["a-", "a-2", "a-10", "a-1"]
        assert await self._ids(log, saga_id_prefix="a") == ["a-", "a.1", "a-2", "a-10", "a-1"]
        assert await self._ids(log, saga_id_prefix="c") == []
        assert await self._ids(log, saga_id_prefix="a-1", saga_id="a-10") == ["a-10"]

    async def test_find_by_input_fields(self, log: SagaLog) -> None:
        inputs: list[JsonObject] = [
            {"order_id": "42", "customer": "ann"},
            {"order_id": 42, "customer": "bob"},
            {"order_id": 42.0},
            {"order_id": True},
            {"order_id": {"42": 42}},
            {"order_id": "042"},
            {"nested": {"order_id": "42"}},
            {"order_id": -7, "customer": "ann"},
        ]
        for i, saga_input in enumerate(inputs):
            await log.create(_new(f"s-{i}", at_ms=W0 + i, input=saga_input))
        assert await self._ids(log, input_equals=[("order_id", "42")]) == ["s-1", "s-0"]
        assert await self._ids(log, input_equals=[("order_id", "-7")]) == ["s-7"]
        assert await self._ids(log, input_equals=[("order_id", "1")]) == []
        assert await self._ids(log, input_equals=[("customer", "ann")]) == ["s-7", "s-0"]
        assert await self._ids(log, input_equals=[("customer", "ann"), ("order_id", "42")]) == [
            "s-0"
        ]
        assert await self._ids(log, input_equals=[("missing", "42")]) == []
        # Pages of a search hold every match once.
        pages = await log.find_all(SagaQuery(input_equals=[("order_id", "42")], limit=1))
        assert [r.saga_id for r in pages] == ["s-1", "s-0"]

    @pytest.mark.parametrize(
        "filters",
        [
            {"input_equals": [("order-id", "1")]},
            {"input_equals": [("1st", "1")]},
            {"input_equals": [("a.b", "1")]},
            {"input_equals": [("", "1")]},
            {"input_equals": [("x" * 65, "1")]},
            {"input_equals": [("f", 1)]},
            {"input_equals": [("f", "x" * 201)]},
            {"input_equals": [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")]},
            {"saga_id": "bad id"},
            {"saga_id_prefix": "-x"},
            {"saga_id_prefix": ""},
        ],
    )
    async def test_find_rejects_bad_search_terms(
        self, log: SagaLog, filters: dict[str, Any]
    ) -> None:
        with pytest.raises(QueryError):
            SagaQuery(**filters)

    # -- tally -----------------------------------------------------------------------------

    async def _history(self, log: SagaLog) -> None:
        """Sagas of two names over three minutes of W0: finished, failing, stuck, running."""
        order_runs = [("o1", 0, 2_000), ("o2", 1_000, 4_000), ("o3", 61_000, 10_000)]
        for saga_id, start, took in order_runs:  # completed
            await log.create(_new(saga_id, at_ms=W0 + start))
            done = _event(EventType.SAGA_COMPLETED, W0 + start + took, results={})
            await log.append([_advance(saga_id, 1, done, status=SagaStatus.COMPLETED)])
        await log.create(_new("o4", at_ms=W0 + 2_000))  # compensated, after a rejected step
        await log.append(
            [
                _advance(
                    "o4", 1,
                    _event(EventType.STEP_REJECTED, W0 + 3_000, step="pay", direction="forward"),
                    _event(EventType.SAGA_COMPENSATED, W0 + 8_000, compensated=[]),
                    status=SagaStatus.COMPENSATED,
                )
            ]
        )  # fmt: skip
        await log.create(_new("t1", name="travel", at_ms=W0 + 62_000))  # stuck compensating
        await log.append(
            [
                _advance(
                    "t1", 1,
                    _event(EventType.STEP_FAILED, W0 + 63_000, step="fly", direction="forward"),
                    _event(EventType.STEP_FAILED, W0 + 64_000, step="fly", direction="forward"),
                    _event(EventType.STEP_FAILED, W0 + 65_000, step="car", direction="compensate"),
                    _event(EventType.SAGA_STUCK, W0 + 125_000, code="x", reason="gave up"),
                    status=SagaStatus.STUCK, health=Health.STUCK, current_step="car",
                )
            ]
        )  # fmt: skip
        await log.create(_new("t2", name="travel", at_ms=W0 + 130_000))  # running, retrying
        await log.append(
            [
                _advance(
                    "t2", 1,
                    _event(EventType.STEP_FAILED, W0 + 131_000, step="fly", direction="forward"),
                    status=SagaStatus.RUNNING, health=Health.RETRYING, current_step="fly",
                )
            ]
        )  # fmt: skip
        await log.create(_new("old", name="travel", at_ms=W0 - 600_000))  # before the window
        await log.append(
            [
                _advance(
                    "old", 1,
                    _event(EventType.STEP_FAILED, W0 - 590_000, step="fly", direction="forward"),
                    status=SagaStatus.RUNNING, health=Health.NEEDS_ATTENTION,
                    current_step="fly",
                )
            ]
        )  # fmt: skip

    async def test_tally_counts_match_what_find_lists(self, log: SagaLog) -> None:
        await self._history(log)
        stalled = W0 + 120_000  # t1 is stuck anyway; "old" stalled into stuck
        tally = await log.tally(W0, W0 + 3 * MINUTE_MS, stalled_before_ms=stalled)
        for status in SagaStatus:
            listed = await log.find_all(SagaQuery(statuses=[status], limit=MAX_PAGE_SIZE))
            assert tally.statuses[status] == len(listed), status
        for health in Health:
            query = SagaQuery(healths=[health], stalled_before_ms=stalled, limit=MAX_PAGE_SIZE)
            assert tally.healths[health] == len(await log.find_all(query)), health
        assert tally.statuses[SagaStatus.COMPLETED] == 3
        assert tally.healths[Health.STUCK] == 2
        assert tally.healths[Health.NEEDS_ATTENTION] == 0
        plain = await log.tally(W0, W0 + MINUTE_MS)
        assert plain.healths[Health.NEEDS_ATTENTION] == 1
        assert plain.healths[Health.STUCK] == 1

    async def test_tally_time_series_per_minute(self, log: SagaLog) -> None:
        await self._history(log)
        tally = await log.tally(W0, W0 + 3 * MINUTE_MS)
        assert [m.start_ms for m in tally.minutes] == [W0, W0 + MINUTE_MS, W0 + 2 * MINUTE_MS]
        assert [(m.started, m.completed, m.compensated, m.stuck) for m in tally.minutes] == [
            (3, 2, 1, 0),
            (2, 1, 0, 0),
            (1, 0, 0, 1),
        ]
        later = await log.tally(W0 + MINUTE_MS, W0 + 2 * MINUTE_MS)
        assert [(m.started, m.completed) for m in later.minutes] == [(2, 1)]

    async def test_tally_durations_and_compensation_rate_per_name(self, log: SagaLog) -> None:
        await self._history(log)
        tally = await log.tally(W0, W0 + 3 * MINUTE_MS)
        assert len(tally.names) == 1  # travel has no saga finished in the window
        order = tally.names[0]
        assert (order.name, order.completed, order.compensated) == ("order", 3, 1)
        assert order.compensation_rate == 0.25
        # Durations 2 s, 4 s, 6 s, 10 s: nearest rank p50 is the 2nd, p99 the 4th.
        assert (order.p50_ms, order.p99_ms) == (4_000, 10_000)
        first_minute = await log.tally(W0, W0 + MINUTE_MS)
        assert [(n.completed, n.compensated, n.p50_ms, n.p99_ms) for n in first_minute.names] == [
            (2, 1, 4_000, 6_000)
        ]

    async def test_tally_lists_the_steps_that_fail_most(self, log: SagaLog) -> None:
        await self._history(log)
        tally = await log.tally(W0, W0 + 3 * MINUTE_MS)
        found = [(f.name, f.step, f.direction, f.failures) for f in tally.failing_steps]
        assert found == [
            ("travel", "fly", "forward", 3),
            ("order", "pay", "forward", 1),
            ("travel", "car", "compensate", 1),
        ]
        # Only failures in the window count: "old" failed before it.
        early = await log.tally(W0 - 10 * MINUTE_MS, W0)
        assert [(f.step, f.failures) for f in early.failing_steps] == [("fly", 1)]

    async def test_tally_of_an_empty_log(self, log: SagaLog) -> None:
        tally = await log.tally(W0, W0 + 2 * MINUTE_MS)
        assert set(tally.statuses.values()) == {0}
        assert set(tally.healths.values()) == {0}
        assert len(tally.minutes) == 2
        assert tally.names == []
        assert tally.failing_steps == []

    @pytest.mark.parametrize(
        ("since", "until"),
        [(W0, W0), (W0 + 1, W0 + MINUTE_MS), (W0, W0 - MINUTE_MS), (W0, W0 + 1441 * MINUTE_MS)],
    )
    async def test_tally_rejects_a_bad_window(self, log: SagaLog, since: int, until: int) -> None:
        with pytest.raises(QueryError):
            await log.tally(since, until)

    # -- done by hand ------------------------------------------------------------------------

    async def test_done_by_hand_names_sagas_an_operator_resolved_or_skipped(
        self, log: SagaLog
    ) -> None:
        actions = {"resolved": "resolve", "skipped": "skip", "retried": "retry"}
        for saga_id, action in actions.items():
            await log.create(_new(saga_id))
            audit = _event(EventType.OPERATOR_ACTION, W0 + 1, action=action, actor="a", reason="r")
            await log.append([_advance(saga_id, 1, audit)])
        await log.create(_new("untouched"))
        found = await log.done_by_hand(["resolved", "skipped", "retried", "untouched", "nope"])
        assert found == {"resolved", "skipped"}
        assert await log.done_by_hand([]) == set()
