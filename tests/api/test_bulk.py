"""POST /api/bulk/{action}: many sagas, one reason, a dry run that changes nothing, then one
audit entry per saga through the single action's path; bad requests change nothing."""

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


async def _stuck_compensations(
    client: Client, coordinator: Coordinator, shop: Shop, count: int
) -> list[str]:
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 1000
    ids = []
    for i in range(count):
        saga_id = await start(client, saga_id=f"stuck-{i}", input={"batch": "b7"})
        assert await settled(coordinator, saga_id) is SagaStatus.STUCK
        ids.append(saga_id)
    return ids


async def _audits(log: SagaLog, saga_id: str) -> list[dict[str, Any]]:
    return [e.data for e in await log.events(saga_id) if e.type is EventType.OPERATOR_ACTION]


async def test_bulk_resolve_dry_run_then_confirm(
    client: Client, coordinator: Coordinator, shop: Shop, log: SagaLog
) -> None:
    await start(client, saga_id="done")
    await settled(coordinator, "done")
    stuck = await _stuck_compensations(client, coordinator, shop, 2)
    chosen = [*stuck, "done", "missing"]
    seqs = {s: (await log.get(s)).last_seq for s in [*stuck, "done"]}  # type: ignore[union-attr]

    body = {"saga_ids": chosen, "reason": "refunded by the bank", "dry_run": True}
    dry = await client.post("/api/bulk/resolve", json=body, headers=OPERATOR)
    assert dry.status == 200, await dry.text()
    preview = await dry.json()
    assert (preview["action"], preview["dry_run"], preview["ok"], preview["refused"]) == (
        "resolve", True, 2, 2,
    )  # fmt: skip
    outcomes = {item["saga_id"]: item for item in preview["items"]}
    assert [item["saga_id"] for item in preview["items"]] == chosen
    assert outcomes["stuck-0"]["outcome"] == "ok"
    assert outcomes["stuck-0"]["compensations"] == ["create"]
    assert outcomes["stuck-0"]["status"] == "compensating"
    assert outcomes["done"]["reason"] == "saga is already completed"
    assert outcomes["done"]["outcome"] == "refused"
    assert "already completed" in outcomes["done"]["reason"]
    assert outcomes["missing"]["outcome"] == "not_found"
    for saga_id, seq in seqs.items():  # a dry run writes nothing
        assert (await log.get(saga_id)).last_seq == seq  # type: ignore[union-attr]

    shop.fail["payments.release"] = 0
    body["dry_run"] = False
    done = await (await client.post("/api/bulk/resolve", json=body, headers=OPERATOR)).json()
    assert (done["ok"], done["refused"]) == (2, 2)
    for saga_id in stuck:
        assert await settled(coordinator, saga_id) is SagaStatus.COMPENSATED
        [audit] = await _audits(log, saga_id)
        assert (audit["action"], audit["actor"], audit["reason"]) == (
            "resolve", "ana", "refunded by the bank",
        )  # fmt: skip
    assert await _audits(log, "done") == []
    rows = (await (await client.get("/api/sagas", headers=VIEWER)).json())["sagas"]
    assert {r["saga_id"] for r in rows if r["by_hand"]} == set(stuck)


async def test_bulk_retry_by_filter(
    client: Client, coordinator: Coordinator, shop: Shop, log: SagaLog
) -> None:
    stuck = await _stuck_compensations(client, coordinator, shop, 3)
    shop.fail["payments.release"] = 0
    body = {
        "filter": {"status": ["stuck"], "input": {"batch": "b7"}},
        "reason": "payments is back",
        "actor": "night shift",
    }
    answer = await (await client.post("/api/bulk/retry", json=body, headers=OPERATOR)).json()
    assert sorted(item["saga_id"] for item in answer["items"]) == stuck
    assert answer["ok"] == 3
    for saga_id in stuck:
        assert await settled(coordinator, saga_id) is SagaStatus.COMPENSATED
        [audit] = await _audits(log, saga_id)
        assert (audit["action"], audit["actor"]) == ("retry", "night shift (token ana)")
    nothing = {"filter": {"status": ["stuck"]}, "reason": "again"}
    again = await (await client.post("/api/bulk/retry", json=nothing, headers=OPERATOR)).json()
    assert again["items"] == []


async def test_bulk_cancel_refuses_past_the_pivot(
    client: Client, coordinator: Coordinator, shop: Shop
) -> None:
    shop.fail["inventory.ship"] = 100
    await start(client, "ship", saga_id="shipping")
    assert await settled(coordinator, "shipping") is SagaStatus.STUCK
    body = {"saga_ids": ["shipping"], "reason": "customer called"}
    answer = await (await client.post("/api/bulk/cancel", json=body, headers=OPERATOR)).json()
    [item] = answer["items"]
    assert item["outcome"] == "refused"
    assert "pivot" in item["reason"]


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ({"saga_ids": ["a"]}, 422, "reason"),
        ({"saga_ids": ["a"], "reason": "   "}, 422, "reason is required"),
        ({"reason": "x"}, 422, "either saga_ids or filter"),
        ({"saga_ids": ["a"], "filter": {}, "reason": "x"}, 422, "either saga_ids or filter"),
        ({"saga_ids": [f"s-{i}" for i in range(201)], "reason": "x"}, 422, "saga_ids"),
        ({"saga_ids": ["bad id"], "reason": "x"}, 422, "saga_ids 'bad id' is invalid"),
        ({"saga_ids": ["a"], "reason": "x", "force": True}, 422, "unknown fields"),
        ({"filter": {"colour": "red"}, "reason": "x"}, 422, "unknown fields: filter.colour"),
        ({"filter": {"input": {"a-b": "1"}}, "reason": "x"}, 422, "filter.input.a-b does not"),
        ({"filter": {"status": ["lost"]}, "reason": "x"}, 422, "filter.status must be one of"),
    ],
)
async def test_bad_bulk_requests_change_nothing(
    client: Client, log: SagaLog, body: dict[str, Any], status: int, said: str
) -> None:
    response = await client.post("/api/bulk/retry", json=body, headers=OPERATOR)
    assert said in await error_of(response, status)


async def test_bulk_needs_an_operator_a_known_action_and_a_narrow_filter(
    client: Client, coordinator: Coordinator
) -> None:
    body = {"saga_ids": ["a"], "reason": "x"}
    assert (await client.post("/api/bulk/retry", json=body, headers=VIEWER)).status == 403
    skip = await client.post("/api/bulk/skip", json=body, headers=OPERATOR)
    assert "no bulk action 'skip'" in await error_of(skip, 404)
    for i in range(201):
        await coordinator.start("order", {}, saga_id=f"many-{i}")
    wide = {"filter": {"name": "order"}, "reason": "x", "dry_run": True}
    response = await client.post("/api/bulk/cancel", json=wide, headers=OPERATOR)
    assert "more than 200" in await error_of(response, 422)
