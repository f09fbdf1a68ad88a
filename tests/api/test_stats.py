"""GET /api/stats: counts match the list for the same filter; per-minute figures, durations
and failing steps over a window; bad windows are 400."""

from __future__ import annotations

from typing import Any

import pytest

from saga import Coordinator, SagaStatus
from saga.events import EventType
from saga.log.base import SagaLog
from tests.api.conftest import OPERATOR, VIEWER, settled, start
from tests.api.test_api import error_of
from tests.coordinator.shop import Shop

Client = Any


async def _history(client: Client, coordinator: Coordinator, shop: Shop) -> None:
    """Three completed orders, one compensated, one stuck compensating, one shipped."""
    for i in range(3):
        await start(client, saga_id=f"ok-{i}")
        await settled(coordinator, f"ok-{i}")
    shop.reject.add("inventory.reserve")
    await start(client, saga_id="undone")
    await settled(coordinator, "undone")
    shop.fail["payments.release"] = 100
    await start(client, saga_id="stuck")
    assert await settled(coordinator, "stuck") is SagaStatus.STUCK
    await start(client, "ship", saga_id="shipped")
    await settled(coordinator, "shipped")


async def _listed(client: Client, query: str) -> int:
    body = await (await client.get(f"/api/sagas?{query}&limit=1000", headers=VIEWER)).json()
    return len(body["sagas"])


async def test_stats_counts_match_the_list(
    client: Client, coordinator: Coordinator, shop: Shop
) -> None:
    await _history(client, coordinator, shop)
    response = await client.get("/api/stats", headers=VIEWER)
    assert response.status == 200, await response.text()
    stats = await response.json()
    for status, count in stats["statuses"].items():
        assert count == await _listed(client, f"status={status}"), status
    for health, count in stats["healths"].items():
        assert count == await _listed(client, f"health={health}"), health
    assert stats["statuses"]["completed"] == 4
    assert stats["statuses"]["compensated"] == 1
    assert stats["stuck"] == stats["healths"]["stuck"] == 1
    assert stats["needs_attention"] == 0


async def test_stats_over_a_window(
    client: Client, coordinator: Coordinator, shop: Shop, log: SagaLog
) -> None:
    await _history(client, coordinator, shop)
    stats = await (await client.get("/api/stats?minutes=5", headers=VIEWER)).json()
    window = stats["window"]
    assert window["minutes"] == 5
    assert window["until_ms"] - window["since_ms"] == 5 * 60_000
    assert window["since_ms"] <= coordinator.clock.now_ms() < window["until_ms"]
    series = stats["series"]
    assert len(series) == 5
    assert sum(m["started"] for m in series) == 6
    assert sum(m["completed"] for m in series) == 4
    assert sum(m["compensated"] for m in series) == 1
    assert sum(m["stuck"] for m in series) == 1
    names = {n["name"]: n for n in stats["by_name"]}
    assert (names["order"]["completed"], names["order"]["compensated"]) == (3, 1)
    assert names["order"]["compensation_rate"] == 0.25
    assert 0 <= names["order"]["p50_ms"] <= names["order"]["p99_ms"]
    assert (names["ship"]["completed"], names["ship"]["compensated"]) == (1, 0)
    failing = {
        (f["name"], f["step"], f["direction"]): f["failures"] for f in stats["failing_steps"]
    }
    # The rejected stock step of "undone" and "stuck", and the three failed releases.
    assert failing[("order", "stock", "forward")] == 2
    events = await log.events("stuck")
    releases = [e for e in events if e.type is EventType.STEP_FAILED]
    assert failing[("order", "credit", "compensate")] == len(releases) == 3


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("minutes=0", "minutes"),
        ("minutes=1441", "minutes"),
        ("minutes=soon", "minutes"),
    ],
)
async def test_bad_stats_queries_are_400(client: Client, query: str, said: str) -> None:
    response = await client.get(f"/api/stats?{query}", headers=VIEWER)
    assert said in await error_of(response, 400)


async def test_stats_need_a_token(client: Client) -> None:
    assert (await client.get("/api/stats")).status == 401
    assert (await client.get("/api/stats", headers=OPERATOR)).status == 200


async def test_stats_and_search_on_sql_logs(sql_url: str, shop: Shop) -> None:
    """The same figures, search and by-hand marks over SQLite and PostgreSQL."""
    from aiohttp.test_utils import TestClient, TestServer

    from saga.api import ApiConfig, create_app
    from saga.log.sql import SqlSagaLog
    from saga.testing import InMemoryTransport
    from tests.api.conftest import TOKENS
    from tests.coordinator.shop import order_saga, pivot_saga

    log = SqlSagaLog(sql_url)
    transport = InMemoryTransport(shop.participants)
    coordinator = Coordinator(log, transport, sagas=[order_saga(), pivot_saga()])
    app = create_app(coordinator, ApiConfig(tokens=TOKENS))
    async with coordinator, TestClient(TestServer(app)) as client:
        await _history(client, coordinator, shop)
        stats = await (await client.get("/api/stats?minutes=5", headers=VIEWER)).json()
        for status, count in stats["statuses"].items():
            assert count == await _listed(client, f"status={status}"), status
        for health, count in stats["healths"].items():
            assert count == await _listed(client, f"health={health}"), health
        assert sum(m["started"] for m in stats["series"]) == 6
        assert sum(m["stuck"] for m in stats["series"]) == 1
        names = {n["name"]: n for n in stats["by_name"]}
        assert (names["order"]["completed"], names["order"]["compensated"]) == (3, 1)
        failing = {(f["step"], f["direction"]): f["failures"] for f in stats["failing_steps"]}
        assert failing == {("stock", "forward"): 2, ("credit", "compensate"): 3}
        assert await _listed(client, "saga_id_prefix=ok-") == 3
        assert await _listed(client, "saga_id=stuck") == 1
        resolved = await client.post(
            "/api/sagas/stuck/actions/resolve", json={"reason": "by hand"}, headers=OPERATOR
        )
        assert resolved.status == 200
        assert await settled(coordinator, "stuck") is SagaStatus.COMPENSATED
        rows = (await (await client.get("/api/sagas", headers=VIEWER)).json())["sagas"]
        assert [r["saga_id"] for r in rows if r["by_hand"]] == ["stuck"]
