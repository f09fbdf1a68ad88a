"""Saga ids over HTTP: one grammar, 400 for ids outside it, 409 for a reused id, safe Locations."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from saga import Coordinator, SagaStatus
from saga.log.base import SagaLog
from tests.api.conftest import OPERATOR, VIEWER, settled
from tests.api.test_api import error_of

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    "saga_id",
    [" victim", "victim ", "line\nbreak", "cr\rlf", "a/b", "..", "../admin", "a?b", "a#b",
     "50%25", "ünï", "x" * 201, "tab\t", "\u2028"],
)  # fmt: skip
async def test_a_start_with_an_id_outside_the_grammar_is_400_and_creates_nothing(
    client: Client, log: SagaLog, saga_id: str
) -> None:
    response = await client.post(
        "/api/sagas/order", json={"input": {}, "saga_id": saga_id}, headers=OPERATOR
    )
    message = await error_of(response, 400)
    assert "saga_id" in message
    assert "Location" not in response.headers
    assert (await log.find()).sagas == []


async def test_ids_with_every_allowed_character_round_trip_through_location(
    client: Client, coordinator: Coordinator
) -> None:
    saga_id = "Order.42:eu-west_1@shop"
    response = await client.post(
        "/api/sagas/order", json={"input": {}, "saga_id": saga_id}, headers=OPERATOR
    )
    assert response.status == 201
    location = response.headers["Location"]
    assert location.startswith("/api/sagas/")
    assert "/" not in location.removeprefix("/api/sagas/")
    detail = await client.get(location, headers=VIEWER)
    assert detail.status == 200
    assert (await detail.json())["saga_id"] == saga_id
    assert await settled(coordinator, saga_id) is SagaStatus.COMPLETED


async def test_a_reused_id_with_another_input_or_saga_is_409_naming_the_difference(
    client: Client, coordinator: Coordinator, log: SagaLog
) -> None:
    body = {"input": {"sku": "A", "qty": 1}, "saga_id": "order-7"}
    assert (await client.post("/api/sagas/order", json=body, headers=OPERATOR)).status == 201
    same = await client.post(
        "/api/sagas/order",
        json={"saga_id": "order-7", "input": {"qty": 1, "sku": "A"}},
        headers=OPERATOR,
    )
    assert same.status == 200, "the same start again is idempotent"
    assert (await same.json())["created"] is False
    other_input = await client.post(
        "/api/sagas/order", json={**body, "input": {"sku": "B", "qty": 1}}, headers=OPERATOR
    )
    assert "another input" in await error_of(other_input, 409)
    other_saga = await client.post("/api/sagas/ship", json=body, headers=OPERATOR)
    assert "another name" in await error_of(other_saga, 409)
    events = await log.events("order-7")
    assert events[0].data["input"] == {"sku": "A", "qty": 1}
    assert len((await log.find()).sagas) == 1
    await settled(coordinator, "order-7")


@pytest.mark.parametrize("path", ["/api/sagas/%20victim", "/api/sagas/a%0Ab", "/api/sagas/.x"])
async def test_reading_or_acting_on_an_invalid_id_is_400(client: Client, path: str) -> None:
    assert "invalid" in await error_of(await client.get(path, headers=VIEWER), 400)
    acted = await client.post(f"{path}/actions/cancel", json={"reason": "test"}, headers=OPERATOR)
    assert "invalid" in await error_of(acted, 400)
