"""API fixtures: an in-memory coordinator running the shop's sagas, and a test client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, SagaStatus
from saga.api import ApiConfig, Role, Token, create_app
from saga.log.base import SagaLog
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.coordinator.shop import Shop, order_saga, pivot_saga

VIEWER = {"Authorization": "Bearer viewer-secret-1"}
OPERATOR = {"Authorization": "Bearer operator-secret-1"}
TOKENS = (
    Token(secret="viewer-secret-1", role=Role.VIEWER, name="vera"),
    Token(secret="operator-secret-1", role=Role.OPERATOR, name="ana"),
)


@pytest.fixture
def shop() -> Shop:
    return Shop()


@pytest.fixture
def config() -> ApiConfig:
    return ApiConfig(tokens=TOKENS, redact=frozenset({"card"}))


@pytest.fixture
def log() -> SagaLog:
    return InMemorySagaLog()


@pytest.fixture
async def coordinator(shop: Shop, log: SagaLog) -> AsyncIterator[Coordinator]:
    coordinator = Coordinator(
        log, InMemoryTransport(shop.participants), sagas=[order_saga(), pivot_saga()]
    )
    async with coordinator:
        yield coordinator


@pytest.fixture
async def client(
    coordinator: Coordinator, config: ApiConfig
) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(coordinator, config))) as client:
        yield client


async def settled(coordinator: Coordinator, saga_id: str) -> SagaStatus:
    """Wait (bounded) until the saga is completed, compensated or stuck."""
    result = await asyncio.wait_for(coordinator.wait(saga_id), 10)
    return result.status


async def reaches(coordinator: Coordinator, saga_id: str, status: SagaStatus) -> bool:
    """Poll (bounded) until the saga's logged status is ``status``."""
    for _ in range(500):
        if (await coordinator.get(saga_id)).status is status:
            return True
        await asyncio.sleep(0.02)
    return False


async def start(client: TestClient[Any, Any], name: str = "order", **body: Any) -> str:
    response = await client.post(f"/api/sagas/{name}", json=body, headers=OPERATOR)
    assert response.status in (200, 201), await response.text()
    saga_id: str = (await response.json())["saga_id"]
    return saga_id


# The browser fixtures (server, page, shots) for every dashboard test here; imported last, as
# they build on the names above.
from tests.api.browser import page, server, shots  # noqa: E402, F401
