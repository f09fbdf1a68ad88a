"""GET /api/sagas searches by saga id (exact, prefix) and by a top-level input field, and
marks sagas done by hand."""

from __future__ import annotations

from typing import Any

import pytest

from saga import Coordinator, SagaStatus
from tests.api.conftest import OPERATOR, VIEWER, settled, start
from tests.api.test_api import error_of
from tests.coordinator.shop import Shop

Client = Any


async def _ids(client: Client, query: str) -> list[str]:
    response = await client.get(f"/api/sagas?{query}", headers=VIEWER)
    assert response.status == 200, await response.text()
    return [s["saga_id"] for s in (await response.json())["sagas"]]


async def test_search_by_id_prefix_and_input_field(
    client: Client, coordinator: Coordinator
) -> None:
    inputs: dict[str, dict[str, Any]] = {
        "ord-1": {"order_id": "A-17", "customer": 42},
        "ord-10": {"order_id": "A-18", "customer": 7},
        "ord-2": {"order_id": "A-17", "customer": "42"},
        "other": {"order_id": "B-1", "customer": True},
    }
    for saga_id, saga_input in inputs.items():
        await start(client, saga_id=saga_id, input=saga_input)
        await settled(coordinator, saga_id)
    assert await _ids(client, "saga_id=ord-1") == ["ord-1"]
    assert await _ids(client, "saga_id=ord-3") == []
    assert await _ids(client, "saga_id_prefix=ord-1") == ["ord-10", "ord-1"]
    assert await _ids(client, "saga_id_prefix=ord") == ["ord-2", "ord-10", "ord-1"]
    assert await _ids(client, "input.order_id=A-17") == ["ord-2", "ord-1"]
    # A number in the query string finds the integer and the string alike, never a boolean.
    assert await _ids(client, "input.customer=42") == ["ord-2", "ord-1"]
    assert await _ids(client, "input.customer=true") == []
    assert await _ids(client, "input.order_id=A-17&input.customer=7") == []
    assert await _ids(client, "input.order_id=A-17&saga_id_prefix=ord-1") == ["ord-1"]
    assert await _ids(client, "input.order_id=A-17&status=completed&limit=1") == ["ord-2"]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("input.order-id=1", "is not a field name"),
        ("input.a.b=1", "is not a field name"),
        ("input.=1", "is not a field name"),
        ("saga_id=bad%20id", "saga_id 'bad id' is invalid"),
        ("saga_id_prefix=-x", "saga_id_prefix '-x' is invalid"),
        (f"input.f={'x' * 201}", "at most 200 characters"),
    ],
)
async def test_bad_search_terms_are_400(client: Client, query: str, said: str) -> None:
    response = await client.get(f"/api/sagas?{query}", headers=VIEWER)
    assert said in await error_of(response, 400)


async def test_list_rows_mark_sagas_done_by_hand(
    client: Client, coordinator: Coordinator, shop: Shop
) -> None:
    await start(client, saga_id="fine")
    await settled(coordinator, "fine")
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    await start(client, saga_id="handled")
    assert await settled(coordinator, "handled") is SagaStatus.STUCK
    rows = {
        s["saga_id"]: s
        for s in (await (await client.get("/api/sagas", headers=VIEWER)).json())["sagas"]
    }
    assert rows["handled"]["by_hand"] is False
    listed = await (await client.get("/api/compensations", headers=VIEWER)).json()
    assert [c["by_hand"] for c in listed["compensations"]] == [False]
    done = await client.post(
        "/api/sagas/handled/actions/resolve", json={"reason": "refunded"}, headers=OPERATOR
    )
    assert done.status == 200
    assert await settled(coordinator, "handled") is SagaStatus.COMPENSATED
    rows = {
        s["saga_id"]: s
        for s in (await (await client.get("/api/sagas", headers=VIEWER)).json())["sagas"]
    }
    assert (rows["handled"]["by_hand"], rows["fine"]["by_hand"]) == (True, False)
