"""GET /api/inbox: what needs a person, with the reason, the service, since the first
failure, and the actions that fit (those the saga page allows)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, SagaStatus
from saga.api import ApiConfig, create_app
from saga.api.story import human_text as human
from saga.events import EventType, Health
from saga.log.base import SagaLog
from saga.testing import FakeClock, InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR, VIEWER, settled, start
from tests.api.test_api import _lose_credit, error_of
from tests.coordinator.shop import Shop, order_saga

Client = Any


async def _inbox(client: Client, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/inbox?{query}", headers=VIEWER)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_inbox_lists_stuck_sagas_with_why_where_since_and_actions(
    client: Client, coordinator: Coordinator, shop: Shop, log: SagaLog
) -> None:
    await start(client, saga_id="fine")
    await settled(coordinator, "fine")
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    await start(client, saga_id="stuck")
    assert await settled(coordinator, "stuck") is SagaStatus.STUCK
    shop.fail["inventory.ship"] = 100
    await start(client, "ship", saga_id="shipping")
    assert await settled(coordinator, "shipping") is SagaStatus.STUCK

    inbox = await _inbox(client)
    items = {item["saga_id"]: item for item in inbox["items"]}
    assert set(items) == {"stuck", "shipping"}
    assert inbox["counts"] == {"stuck": 2, "needs_attention": 0, "failing_compensation": 0}
    item = items["stuck"]
    assert (item["kind"], item["step"], item["direction"]) == ("stuck", "credit", "compensate")
    assert item["service"] == "payments"
    assert item["attempts"] == 3
    assert "payments.release is down" in item["reason"]
    events = await log.events("stuck")
    failures = [e.at_ms for e in events if e.type is EventType.STEP_FAILED]
    assert item["since_ms"] == failures[0]  # the first failure, not the last update
    assert item["updated_ms"] == events[-1].at_ms
    detail = await (await client.get("/api/sagas/stuck", headers=VIEWER)).json()
    fitting = [name for name, fit in detail["actions"].items() if fit["allowed"]]
    assert item["actions"] == fitting
    assert "resolve" in item["actions"]
    assert "cancel" not in item["actions"]
    assert item["by_hand"] is False
    shipping = items["shipping"]
    assert (shipping["step"], shipping["service"]) == ("ship", "inventory")
    assert "cancel" not in shipping["actions"]  # past the pivot

    resolved = await client.post(
        "/api/sagas/stuck/actions/resolve", json={"reason": "refunded"}, headers=OPERATOR
    )
    assert resolved.status == 200
    assert await settled(coordinator, "stuck") is SagaStatus.COMPENSATED
    after = await _inbox(client)
    assert [item["saga_id"] for item in after["items"]] == ["shipping"]
    only_orders = await _inbox(client, "name=order")
    assert only_orders["items"] == []


async def test_a_stalled_saga_is_in_the_inbox_since_its_last_progress() -> None:
    shop, clock = Shop(), FakeClock()
    transport = InMemoryTransport(shop.participants, intercept=lambda c: _lose_credit(c))
    coordinator = Coordinator(
        InMemorySagaLog(), transport, sagas=[order_saga(timeout=timedelta(hours=1))], clock=clock
    )
    config = ApiConfig(stall_after=timedelta(minutes=10))
    async with coordinator, TestClient(TestServer(create_app(coordinator, config))) as client:
        await coordinator.start("order", {}, saga_id="slow")
        await transport.settle()
        assert (await _inbox(client))["items"] == []
        updated = (await coordinator.log.get("slow")).updated_ms  # type: ignore[union-attr]
        await clock.advance(timedelta(minutes=11))
        [item] = (await _inbox(client))["items"]
        assert (item["saga_id"], item["kind"], item["step"]) == ("slow", "stuck", "credit")
        assert "no progress" in item["reason"]
        assert item["since_ms"] == updated


async def test_bad_inbox_queries_are_400(client: Client) -> None:
    for query in ("limit=0", "limit=201", "limit=x"):
        await error_of(await client.get(f"/api/inbox?{query}", headers=VIEWER), 400)
    # As on every route, a parameter the route does not take is ignored.
    assert (await client.get("/api/inbox?colour=red", headers=VIEWER)).status == 200
    assert (await client.get("/api/inbox")).status == 401


def test_errors_read_in_words() -> None:
    assert human("no reply within 0:00:05") == "no reply within 5 s"
    assert human("no reply within 0:02:00") == "no reply within 2 min"
    # The inbox says what the saga page says (saga.api.story): an hour is not told to the ms.
    assert human("waited 1:00:00.500000") == "waited 1 h"
    assert human("card 4111 declined") == "card 4111 declined"


async def test_a_compensation_that_keeps_failing_is_in_the_inbox(shop: Shop) -> None:
    from saga import RetryPolicy, Saga, Step

    slow = RetryPolicy(initial_interval=timedelta(seconds=30), max_interval=timedelta(seconds=60),
                       max_attempts=None)  # fmt: skip
    saga = Saga(
        name="undo",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel"),
            Step(
                name="credit",
                service="payments",
                command="reserve",
                compensation="release",
                compensation_retry=slow,
            ),
            Step(name="stock", service="inventory", command="reserve", compensation="release"),
        ),
    )
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 1000
    log = InMemorySagaLog()
    coordinator = Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga])
    app = create_app(coordinator, ApiConfig())
    async with coordinator, TestClient(TestServer(app)) as client:
        await coordinator.start("undo", {}, saga_id="undoing")
        for _ in range(500):
            record = await log.get("undoing")
            if record is not None and record.health is Health.WAITING:
                break
            await asyncio.sleep(0.02)
        [item] = (await _inbox(client))["items"]
        assert (item["kind"], item["status"]) == ("failing_compensation", "compensating")
        assert (item["step"], item["direction"], item["service"]) == (
            "credit", "compensate", "payments",
        )  # fmt: skip
        assert item["reason"].startswith("the compensation of credit failed once")
        assert "retry" in item["actions"]
        assert "resolve" in item["actions"]
