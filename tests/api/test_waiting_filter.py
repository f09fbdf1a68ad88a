"""GET /api/sagas?waiting_for=EVENT: the sagas waiting for an outside event now."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, Saga, SagaStatus, Step
from saga.api import create_app
from saga.definition.saga import Wait
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import VIEWER
from tests.api.test_api import error_of
from tests.testing.shop import FAST, Shop

Client = TestClient[Any, Any]


def _approval() -> Saga:
    return Saga(
        name="approval",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel",
                 retry=FAST, compensation_retry=FAST),
            Wait(name="approval", event="manager_approved", timeout=timedelta(days=2)),
        ),
    )  # fmt: skip


@pytest.fixture
async def waiting(config: Any) -> AsyncIterator[tuple[Client, Coordinator, InMemorySagaLog]]:
    shop, log = Shop(), InMemorySagaLog()
    coordinator = Coordinator(log, InMemoryTransport(shop.participants), sagas=[_approval()])
    async with coordinator, TestClient(TestServer(create_app(coordinator, config))) as client:
        yield client, coordinator, log


async def test_the_list_filters_on_what_sagas_wait_for(
    waiting: tuple[Client, Coordinator, InMemorySagaLog],
) -> None:
    client, coordinator, log = waiting
    ids = [(await coordinator.start("approval", {}, saga_id=f"a-{i}")).saga_id for i in range(2)]
    for _ in range(1000):
        records = [await log.get(saga_id) for saga_id in ids]
        if all(r is not None and r.current_step == "approval" for r in records):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"the sagas never reached their wait: {records}")

    async def listed(query: str) -> list[str]:
        response = await client.get(f"/api/sagas?{query}", headers=VIEWER)
        assert response.status == 200, await response.text()
        return [s["saga_id"] for s in (await response.json())["sagas"]]

    assert await listed("waiting_for=manager_approved") == ["a-1", "a-0"]
    assert await listed("waiting_for=manager_approved&limit=1") == ["a-1"]
    assert await listed("waiting_for=paid") == []
    assert await listed("waiting_for=") == ["a-1", "a-0"]  # empty: no filter, as for the rest

    await coordinator.signal("a-0", "manager_approved", event_id="e-1", payload={})
    assert (await asyncio.wait_for(coordinator.wait("a-0"), 30)).status is SagaStatus.COMPLETED
    assert await listed("waiting_for=manager_approved") == ["a-1"]

    for bad in ("has space", "a/b", "x" * 201, "ok?", "é"):
        response = await client.get(f"/api/sagas?waiting_for={quote(bad)}", headers=VIEWER)
        assert "waiting_for" in await error_of(response, 400)
