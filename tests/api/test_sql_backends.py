"""The API over SqlSagaLog on SQLite and PostgreSQL: filters, compensations, resolve, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, SagaStatus, SqlSagaLog
from saga.api import ApiConfig, create_app
from saga.testing import InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS, VIEWER, reaches, settled, start
from tests.coordinator.shop import Shop, order_saga


@pytest.fixture
async def sql_client(
    sql_url: str, shop: Shop
) -> AsyncIterator[tuple[TestClient[Any, Any], Coordinator]]:
    coordinator = Coordinator(
        SqlSagaLog(sql_url), InMemoryTransport(shop.participants), sagas=[order_saga()]
    )
    async with coordinator:
        app = create_app(coordinator, ApiConfig(tokens=TOKENS))
        async with TestClient(TestServer(app)) as client:
            yield client, coordinator


async def test_resolve_a_stuck_compensation_over_a_sql_log(
    sql_client: tuple[TestClient[Any, Any], Coordinator], shop: Shop
) -> None:
    client, coordinator = sql_client
    await settled(coordinator, await start(client, saga_id="fine"))
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    await start(client, saga_id="stuck")
    assert await settled(coordinator, "stuck") is SagaStatus.STUCK

    listed = await (await client.get("/api/sagas?health=stuck", headers=VIEWER)).json()
    assert [s["saga_id"] for s in listed["sagas"]] == ["stuck"]
    by_step = await (await client.get("/api/sagas?step=credit", headers=VIEWER)).json()
    assert [s["saga_id"] for s in by_step["sagas"]] == ["stuck"]
    done = await (await client.get("/api/sagas?status=completed", headers=VIEWER)).json()
    assert [s["saga_id"] for s in done["sagas"]] == ["fine"]
    assert done["sagas"][0]["health"] is None

    comps = await (await client.get("/api/compensations", headers=VIEWER)).json()
    [item] = comps["compensations"]
    assert (item["saga_id"], item["category"], item["step"]) == ("stuck", "stuck", "credit")

    resolved = await client.post(
        "/api/sagas/stuck/actions/resolve", json={"reason": "refunded by hand"}, headers=OPERATOR
    )
    assert resolved.status == 200
    assert await reaches(coordinator, "stuck", SagaStatus.COMPENSATED)
    detail = await (await client.get("/api/sagas/stuck", headers=VIEWER)).json()
    assert detail["status"] == "compensated"
    [audit] = detail["timeline"]["operator_actions"]
    assert (audit["actor"], audit["reason"]) == ("ana", "refunded by hand")
    assert (await client.get("/readyz")).status == 200
