"""explore(): correct sagas pass every schedule; buggy ones fail with a readable schedule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest

from saga import CommandContext, Participant, RetryPolicy, Saga, SagaStatus, Step, StepKind
from saga.coordinator import SagaResult
from saga.participant import InMemoryIdempotencyStore
from saga.protocol import Reply
from saga.testing import ExplorationReport, FaultKind, explore, explore_sync
from tests.testing.shop import CREDIT, ORDER, Shop, books_balance, order_saga, pivot_saga


def failure_text(report: ExplorationReport) -> str:
    with pytest.raises(AssertionError) as caught:
        report.raise_on_failure()
    return str(caught.value)


async def test_a_correct_saga_passes_every_schedule_up_to_two_faults() -> None:
    report = await explore(order_saga(), Shop, input=ORDER, check=books_balance)
    report.raise_on_failure()
    assert report.ok
    assert report.complete
    assert report.schedules_run > 200
    assert report.endings["completed"] > 0
    assert report.endings["compensated"] > 0
    assert "0 failing" in str(report)


async def test_a_compensation_that_keeps_the_stock_is_caught_with_its_schedule() -> None:
    report = await explore(
        order_saga(), lambda: Shop(bug="release_stock"), input=ORDER, check=books_balance
    )
    assert not report.ok
    text = failure_text(report)
    lines = text.splitlines()
    assert lines[0].startswith("saga 'order' v1 broke an invariant under schedule #")
    assert lines[0].endswith("(1 fault: REJECT at credit forward attempt 1):")
    assert "create  forward     attempt 1  orders.create      -> succeeded" in lines[1]
    assert "stock   forward     attempt 1  inventory.reserve  -> succeeded" in lines[2]
    assert "credit  forward     attempt 1  payments.reserve   REJECT -> rejected" in lines[3]
    assert "stock   compensate  attempt 1  inventory.release  -> succeeded" in lines[4]
    assert "create  compensate  attempt 1  orders.cancel      -> succeeded" in lines[5]
    assert lines[6] == (
        "ended: compensated (compensated: stock, create; reason: step 'credit' was rejected)"
    )
    assert lines[7] == "invariant failed: stock of 'widget' is 3 after compensation, expected 5"
    assert report.failures[0].problem == lines[7].removeprefix("invariant failed: ")


async def test_a_bug_behind_three_faults_needs_three_faults_to_show() -> None:
    def make() -> Shop:
        return Shop(bug="release_credit")

    kinds = [FaultKind.TIMEOUT, FaultKind.LOSE_REPLY]
    shallow = await explore(
        order_saga(), make, input=ORDER, check=books_balance, max_faults=2, faults=kinds
    )
    assert shallow.ok
    deep = await explore(
        order_saga(), make, input=ORDER, check=books_balance, max_faults=3, faults=kinds
    )
    text = failure_text(deep)
    assert (
        "3 faults: TIMEOUT at credit forward attempt 1; TIMEOUT at credit forward attempt 2;"
        in (text)
    )
    assert "... 10s pass: credit forward attempt 1 times out" in text
    assert "... 100ms pass: the back-off of credit forward ends" in text
    assert "LOSE_REPLY -> succeeded; reply lost" in text
    assert "reason: step 'credit' exhausted its retries" in text
    assert f"credit for customer 'alice' is 40 after compensation, expected {CREDIT}" in text


def checkout_is_consistent(shop: Shop, result: SagaResult) -> None:
    charged = shop.charged.get(result.saga_id, 0)
    if result.status is SagaStatus.COMPLETED:
        assert charged == ORDER["price"]
        assert shop.shipped == [result.saga_id]
    elif result.status is SagaStatus.COMPENSATED:
        assert charged == 0
        assert shop.shipped == []
        assert shop.orders.get(result.saga_id) in (None, "cancelled")
    else:
        assert result.stuck is not None
        assert result.stuck["code"] == "rejected_after_pivot"
        assert charged == ORDER["price"]
        assert shop.shipped == []


async def test_a_pivot_saga_completes_compensates_or_sticks_visibly() -> None:
    report = await explore(pivot_saga(), Shop, input=ORDER, check=checkout_is_consistent)
    report.raise_on_failure()
    assert report.complete
    assert report.schedules_run > 100
    assert report.endings["completed"] > 0
    assert report.endings["compensated"] > 0
    assert report.endings["stuck"] > 0


class ForgetfulStore(InMemoryIdempotencyStore):
    """An idempotency store that forgets every reply: a broken participant SDK."""

    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        return await self.release(key, owner=owner)


async def test_an_effect_that_happens_twice_is_caught() -> None:
    def make() -> Shop:
        shop = Shop()
        for participant in shop.participants:
            participant.store = ForgetfulStore()
        return shop

    report = await explore(order_saga(), make, input=ORDER, faults=[FaultKind.DUPLICATE_COMMAND])
    text = failure_text(report)
    assert "(1 fault: DUPLICATE_COMMAND at create forward attempt 1)" in text
    assert "DUPLICATE_COMMAND -> succeeded; again -> succeeded" in text
    assert "invariant failed: the step 'create' took effect 2 times at its participant" in text


async def test_a_repeat_is_shown_answered_from_the_record() -> None:
    report = await explore(
        order_saga(),
        Shop,
        input=ORDER,
        check=lambda _shop, _result: pytest.fail("show me"),
        faults=[FaultKind.LOSE_REPLY],
        max_faults=1,
        stop_at_first=False,
    )
    assert report.schedules_run == 4
    assert len(report.failures) == 4
    story = str(report.failures[1])
    assert (
        "create  forward     attempt 1  orders.create      LOSE_REPLY -> succeeded; reply lost"
        in (story)
    )
    assert "create  forward     attempt 2  orders.create      -> succeeded [a repeat" in story


async def test_a_restart_shows_the_crash_and_the_resend() -> None:
    report = await explore(
        order_saga(),
        Shop,
        input=ORDER,
        check=lambda _shop, _result: pytest.fail("show me"),
        faults=[FaultKind.RESTART],
        max_faults=1,
        stop_at_first=False,
    )
    story = str(report.failures[2])
    assert "(1 fault: RESTART at stock forward attempt 1)" in story
    assert "RESTART -> succeeded; reply lost, the coordinator crashes" in story
    assert "... the coordinator restarts" in story
    assert "stock   forward     attempt 1 #2  inventory.reserve  -> succeeded [a repeat" in story
    assert story.endswith("ended: completed\ninvariant failed: show me")


def never_ships() -> list[Participant]:
    shop = Shop()
    shipping = Participant("shipping")

    @shipping.command("ship")
    async def ship(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the courier is always down")

    return [*shop.participants[:3], shipping]


async def test_a_saga_that_never_settles_is_reported_not_hung() -> None:
    report = await explore(pivot_saga(), never_ships, input=ORDER, max_advances=20)
    text = failure_text(report)
    assert "under schedule #1 (no faults):" in text
    last = text.splitlines()[-3]
    assert "ship    forward     attempt 21  shipping.ship" in last
    assert last.endswith("-> failed (handler_error)")
    assert "ended: did not settle" in text
    assert "invariant failed: the saga did not settle: the saga is still running after 20" in text


async def test_an_async_check_that_raises_is_reported_with_its_error() -> None:
    async def check(shop: Shop, result: SagaResult) -> None:
        raise KeyError("missing")

    report = await explore(order_saga(), Shop, input=ORDER, check=check)
    assert report.failures[0].problem == "check raised KeyError: 'missing'"


async def test_the_schedule_bound_is_reported() -> None:
    report = await explore(order_saga(), Shop, input=ORDER, max_schedules=10)
    assert report.ok
    assert report.schedules_run == 10
    assert not report.complete
    assert report.not_run > 0
    assert report.bound_reached
    assert f"stopped at the bound of schedules; {report.not_run} schedules not run" in str(report)


def test_explore_sync_runs_without_an_event_loop() -> None:
    report = explore_sync(order_saga(), Shop, input=ORDER, check=books_balance, max_faults=1)
    assert report.ok
    assert report.schedules_run > 10


async def test_bad_worlds_and_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_faults"):
        await explore(order_saga(), Shop, max_faults=-1)
    with pytest.raises(TypeError, match="make_world must return Participants"):
        await explore(order_saga(), lambda: object(), input=ORDER)


def slow_saga(*, pivot: bool) -> Saga:
    """Keeps creating until a 30 s deadline passes, then ships (a pivot, or compensatable)."""
    return Saga(
        name="slow",
        steps=(
            Step(
                name="create",
                service="orders",
                command="create",
                compensation="cancel",
                retry=RetryPolicy(max_attempts=None),
            ),
            Step(
                name="ship",
                service="shipping",
                command="ship",
                kind=StepKind.PIVOT if pivot else StepKind.COMPENSATABLE,
                compensation=None if pivot else "ship",
            ),
        ),
        deadline=timedelta(seconds=30),
    )


async def test_a_deadline_compensates_within_fake_time() -> None:
    report = await explore(
        slow_saga(pivot=False), Shop, input=ORDER, faults=[FaultKind.TIMEOUT], max_faults=3
    )
    report.raise_on_failure()
    assert report.complete
    assert report.endings["compensated"] > 0


async def test_a_deadline_passing_while_the_pivot_is_in_flight_does_not_spin() -> None:
    report = await explore(
        slow_saga(pivot=True), Shop, input=ORDER, faults=[FaultKind.TIMEOUT], max_faults=3
    )
    report.raise_on_failure()


async def test_a_world_reused_between_runs_is_refused() -> None:
    shop = Shop()
    with pytest.raises(RuntimeError, match="make_world must build fresh participants"):
        await explore(order_saga(), lambda: shop, input=ORDER)


async def test_explore_sync_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="await explore"):
        explore_sync(order_saga(), Shop, input=ORDER)


async def test_a_world_may_be_an_async_context_manager_closed_after_each_run() -> None:
    opened: list[Shop] = []
    closed: list[Shop] = []

    @asynccontextmanager
    async def make() -> AsyncIterator[Shop]:
        shop = Shop()
        opened.append(shop)
        yield shop
        closed.append(shop)

    checked: list[Shop] = []

    async def check(shop: Shop, result: SagaResult) -> None:
        assert shop not in closed  # checked before it is closed
        checked.append(shop)

    report = await explore(order_saga(), make, input=ORDER, check=check, max_faults=1)
    assert report.ok
    assert len(opened) == report.schedules_run
    assert closed == opened
    assert checked == opened


async def test_a_failing_schedule_can_be_run_again_alone() -> None:
    def make() -> Shop:
        return Shop(bug="release_stock")

    first = await explore(order_saga(), make, input=ORDER, check=books_balance)
    again = await explore(
        order_saga(), make, input=ORDER, check=books_balance, schedules=[first.failures[0].schedule]
    )
    assert again.schedules_run == 1
    assert again.failures[0].problem == first.failures[0].problem
    assert again.failures[0].story.splitlines()[1:] == first.failures[0].story.splitlines()[1:]


async def test_a_handler_that_is_not_idempotent_is_caught_when_it_fails_after_its_effect() -> None:
    report = await explore(
        order_saga(),
        lambda: Shop(bug="reserve_stock_twice"),
        input=ORDER,
        check=books_balance,
        faults=[FaultKind.EFFECT_THEN_FAIL],
        max_faults=1,
    )
    text = failure_text(report)
    assert "EFFECT_THEN_FAIL at stock forward attempt 1" in text
    assert "stock   forward     attempt 1  inventory.reserve  EFFECT_THEN_FAIL -> failed" in text


async def test_a_compensation_that_needs_the_forward_result_is_caught() -> None:
    # Every attempt of the stock step takes effect and then fails: the saga compensates,
    # and the compensation handler runs with no recorded result. It must still undo.
    report = await explore(
        order_saga(),
        lambda: Shop(bug="release_needs_result"),
        input=ORDER,
        check=books_balance,
        faults=[FaultKind.EFFECT_THEN_FAIL],
        max_faults=3,
    )
    text = failure_text(report)
    assert text.count("EFFECT_THEN_FAIL") >= 3
    assert "stock of 'widget' is 3 after compensation, expected 5" in text
    correct = await explore(
        order_saga(),
        Shop,
        input=ORDER,
        check=books_balance,
        faults=[FaultKind.EFFECT_THEN_FAIL],
        max_faults=3,
    )
    assert correct.ok, "the correct shop undoes what the failed attempts took"
