"""The contract's promises that schemathesis found broken once, and the start path's move."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from saga import Coordinator
from saga.log.base import SagaLog
from tests.api.conftest import OPERATOR, VIEWER, settled
from tests.api.test_api import error_of

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("status=", "status must be one of running"),
        ("status=completed,", "status must be one of"),
        ("status=completed&status=", "status must be one of"),
        ("health=", "health must be one of"),
        ("created_after=", "created_after must be epoch milliseconds or an ISO 8601 time"),
        ("created_after=yesterday", "created_after must be epoch milliseconds"),
        ("created_before=2024-13-01T00:00:00Z", "created_before must be epoch milliseconds"),
        ("updated_after=99999999999999999999", "updated_after is out of range"),
        ("limit=", "limit must be an integer"),
        ("limit=1001", "limit must be at most 1000"),
        ("waiting_for=a.b", "waiting_for 'a.b' is invalid"),
    ],
)
async def test_bad_list_queries_are_400_naming_the_field(
    client: Client, query: str, words: str
) -> None:
    response = await client.get(f"/api/sagas?{query}", headers=VIEWER)
    assert words in await error_of(response, 400)


async def test_list_params_take_repeats_and_commas_and_times_take_both_forms(
    client: Client, coordinator: Coordinator
) -> None:
    start = await client.post(
        "/api/definitions/order/sagas", json={"saga_id": "t-1"}, headers=OPERATOR
    )
    assert start.status == 201
    await settled(coordinator, "t-1")

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/api/sagas?{query}", headers=VIEWER)
        assert response.status == 200, await response.text()
        return [s["saga_id"] for s in (await response.json())["sagas"]]

    assert await ids("status=completed,running") == ["t-1"]
    assert await ids("status=completed&status=running") == ["t-1"]
    assert await ids("status=running") == []
    assert await ids("created_after=0&created_before=4102444800000") == ["t-1"]
    assert await ids("created_after=2100-01-01T00:00:00Z") == []
    assert await ids("created_after=2000-01-01T00:00:00%2B02:00") == ["t-1"]
    assert await ids("name=") == ["t-1"]  # an empty text filter is no filter


@pytest.mark.parametrize(
    ("action", "body", "words"),
    [
        ("retry", {"reason": "x", "result": {}}, "result is only for skip"),
        ("cancel", {"reason": "x", "result": {"a": 1}}, "result is only for skip"),
        ("retry", {"reason": "x", "actor": None}, "actor must not be null"),
        ("retry", {"reason": "   "}, "reason"),
        ("retry", {}, "reason is required"),
        ("skip", {"reason": "x", "result": None}, "result must not be null"),
        ("skip", {"reason": "x", "result": [1]}, "result must be a JSON object, not list"),
        (
            "skip",
            {"reason": "x", "note": 1},
            "unknown fields: note; allowed: actor, reason, result",
        ),
    ],
)
async def test_each_action_takes_exactly_its_body(
    client: Client, log: SagaLog, action: str, body: dict[str, Any], words: str
) -> None:
    started = await client.post(
        "/api/definitions/order/sagas", json={"saga_id": "a-1"}, headers=OPERATOR
    )
    assert started.status == 201
    response = await client.post(f"/api/sagas/a-1/actions/{action}", json=body, headers=OPERATOR)
    assert words in await error_of(response, 422)
    recorded = [e.type.value for e in await log.events("a-1")]
    assert "operator_action" not in recorded


async def test_start_on_the_new_path_and_the_deprecated_one(client: Client, log: SagaLog) -> None:
    new = await client.post(
        "/api/definitions/order/sagas", json={"saga_id": "n-1", "input": {"sku": "A"}},
        headers=OPERATOR,
    )  # fmt: skip
    assert new.status == 201
    assert new.headers["Location"] == "/api/sagas/n-1"
    assert "Deprecation" not in new.headers
    assert (await new.json())["name"] == "order"

    old = await client.post("/api/sagas/order", json={"saga_id": "o-1"}, headers=OPERATOR)
    assert old.status == 201
    assert old.headers["Deprecation"] == "true"
    assert old.headers["Link"] == '</api/definitions/order/sagas>; rel="successor-version"'
    again = await client.post("/api/sagas/order", json={"saga_id": "o-1"}, headers=OPERATOR)
    assert again.status == 200
    refused = await client.post("/api/sagas/order", json={"version": "1"}, headers=OPERATOR)
    assert "version must be an integer" in await error_of(refused, 422)
    assert refused.headers["Deprecation"] == "true"  # errors say it too

    unknown = await client.post("/api/definitions/nope/sagas", json={}, headers=OPERATOR)
    assert "no saga named 'nope'" in await error_of(unknown, 404)
    whole = await client.post(
        "/api/definitions/order/sagas", json={"version": 1.0, "saga_id": "f-1"}, headers=OPERATOR
    )
    assert whole.status == 201  # 1.0 is an integer in JSON Schema
    for body, words in (
        ({"version": 1.5}, "version must be an integer"),
        ({"version": 0}, "version must be 1 or more"),
        ({"saga_id": None}, "saga_id must not be null"),
        ({"input": None}, "input must not be null"),
    ):
        response = await client.post("/api/definitions/order/sagas", json=body, headers=OPERATOR)
        status = 400 if "saga_id" in body else 422
        assert words in await error_of(response, status), body
    assert sorted(r.saga_id for r in (await log.find()).sagas) == ["f-1", "n-1", "o-1"]
