"""GET /api/services and the saga_service_* metrics: flow control per participant service."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from saga import Coordinator, SagaStatus
from tests.api.conftest import VIEWER, settled, start


async def test_services_lists_queue_in_flight_and_limit_for_viewers(
    client: TestClient[Any, Any], coordinator: Coordinator
) -> None:
    empty = await client.get("/api/services", headers=VIEWER)
    assert (await empty.json()) == {"services": []}

    saga_id = await start(client, input={"sku": "A"})
    assert await settled(coordinator, saga_id) is SagaStatus.COMPLETED
    response = await client.get("/api/services", headers=VIEWER)
    assert response.status == 200
    body = await response.json()
    assert body == {
        "services": [
            # The default maximum is 64; the adaptive limit starts at a quarter of it.
            {"service": name, "queued": 0, "in_flight": 0, "limit": 16}
            for name in ("inventory", "orders", "payments")
        ]
    }


async def test_services_needs_a_token(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/api/services")).status == 401


async def test_metrics_show_flow_control_per_service(
    client: TestClient[Any, Any], coordinator: Coordinator
) -> None:
    saga_id = await start(client, input={"sku": "A"})
    assert await settled(coordinator, saga_id) is SagaStatus.COMPLETED
    text = await (await client.get("/metrics", headers=VIEWER)).text()
    assert 'saga_service_queue_depth{service="orders"} 0.0' in text
    assert 'saga_service_in_flight{service="payments"} 0.0' in text
    assert 'saga_service_limit{service="inventory"} 16.0' in text
