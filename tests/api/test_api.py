"""The HTTP API against an in-memory coordinator: auth, starts, lists, timelines, actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, SagaStatus
from saga.api import ApiConfig, create_app
from saga.events import EventType
from saga.log.base import SagaLog
from saga.testing import FakeClock, InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR, VIEWER, settled, start
from tests.coordinator.shop import Shop, order_saga

Client = TestClient[Any, Any]


async def error_of(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["status"] == status
    message: str = body["error"]["message"]
    return message


# -- auth ----------------------------------------------------------------------------------


async def test_tokens_and_roles(client: Client) -> None:
    response = await client.get("/api/sagas")
    assert "bearer token is required" in await error_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = await client.get("/api/sagas", headers={"Authorization": "Bearer nope-nope-nope"})
    assert "not valid" in await error_of(bad, 401)
    basic = await client.get("/api/sagas", headers={"Authorization": "Basic dXNlcjpwdw=="})
    await error_of(basic, 401)
    assert (await client.get("/api/sagas", headers=VIEWER)).status == 200
    assert (await client.get("/metrics", headers=VIEWER)).status == 200
    refused = await client.post("/api/sagas/order", json={}, headers=VIEWER)
    assert "operator role" in await error_of(refused, 403)
    for public in ("/healthz", "/readyz", "/openapi.json", "/", "/static/app.js"):
        assert (await client.get(public)).status == 200, public
    me = await client.get("/api/me", headers=OPERATOR)
    assert await me.json() == {"name": "ana", "role": "operator", "auth": True}


async def test_without_tokens_everyone_is_an_anonymous_operator(coordinator: Coordinator) -> None:
    async with TestClient(TestServer(create_app(coordinator))) as client:
        assert (await client.get("/api/sagas")).status == 200
        me = await (await client.get("/api/me")).json()
        assert me == {"name": "anonymous", "role": "operator", "auth": False}
        created = await client.post("/api/sagas/order", json={"saga_id": "anon"})
        assert created.status == 201


# -- starting sagas --------------------------------------------------------------------------


async def test_start_is_idempotent_with_a_saga_id(client: Client, coordinator: Coordinator) -> None:
    first = await client.post(
        "/api/sagas/order", json={"input": {"sku": "A"}, "saga_id": "o-1"}, headers=OPERATOR
    )
    assert first.status == 201
    assert first.headers["Location"] == "/api/sagas/o-1"
    body = await first.json()
    assert body["created"] is True
    assert body["saga_id"] == "o-1"
    again = await client.post(
        "/api/sagas/order", json={"input": {"sku": "A"}, "saga_id": "o-1"}, headers=OPERATOR
    )
    assert again.status == 200
    assert (await again.json())["created"] is False
    conflict = await client.post(
        "/api/sagas/order", json={"input": {"sku": "B"}, "saga_id": "o-1"}, headers=OPERATOR
    )
    assert "another input" in await error_of(conflict, 409)
    assert await settled(coordinator, "o-1") is SagaStatus.COMPLETED
    detail = await (await client.get("/api/sagas/o-1", headers=VIEWER)).json()
    assert detail["input"] == {"sku": "A"}
    generated = await client.post("/api/sagas/order", headers=OPERATOR)
    assert generated.status == 201
    assert len((await generated.json())["saga_id"]) == 32


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/sagas/nope", b"{}", 404, "no saga named 'nope'"),
        ("/api/sagas/order", b"{not json", 400, "not valid JSON"),
        ("/api/sagas/order", b"[1, 2]", 422, "JSON object"),
        ("/api/sagas/order", b'{"input": [1]}', 422, "input must be a JSON object"),
        ("/api/sagas/order", b'{"saga_id": 7}', 400, "saga_id"),
        ("/api/sagas/order", b'{"saga_id": ""}', 400, "saga_id"),
        ("/api/sagas/order", b'{"version": "1"}', 422, "version"),
        ("/api/sagas/order", b'{"version": 9}', 404, "version 9"),
        ("/api/sagas/order", b'{"inptu": {}}', 422, "unknown fields: inptu"),
        ("/api/sagas/order", b"\xff\xfe", 400, "not valid JSON"),
    ],
)
async def test_bad_starts_are_4xx_and_change_nothing(
    client: Client, log: SagaLog, path: str, body: bytes, status: int, message: str
) -> None:
    headers = {**OPERATOR, "Content-Type": "application/json"}  # raw bytes, declared JSON
    response = await client.post(path, data=body, headers=headers)
    assert message in await error_of(response, status)
    assert (await log.find()).sagas == []


async def test_oversize_bodies_and_inputs_are_413(coordinator: Coordinator, log: SagaLog) -> None:
    coordinator.max_input_bytes = 2000
    config = ApiConfig(max_body_bytes=4096)
    async with TestClient(TestServer(create_app(coordinator, config))) as client:
        huge = await client.post("/api/sagas/order", json={"input": {"x": "y" * 10_000}})
        await error_of(huge, 413)
        big = await client.post("/api/sagas/order", json={"input": {"x": "y" * 3000}})
        assert "over the 2000 limit" in await error_of(big, 413)
    assert (await log.find()).sagas == []


# -- listing ---------------------------------------------------------------------------------


async def test_list_filters_and_pages(client: Client, coordinator: Coordinator, shop: Shop) -> None:
    for i in range(3):
        await start(client, saga_id=f"ok-{i}")
        await settled(coordinator, f"ok-{i}")
    shop.reject.add("inventory.reserve")
    await start(client, saga_id="undone")
    await settled(coordinator, "undone")
    shop.fail["payments.release"] = 100
    await start(client, saga_id="stuck")
    await settled(coordinator, "stuck")
    await start(client, "ship", saga_id="shipped")
    await settled(coordinator, "shipped")

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/api/sagas?{query}", headers=VIEWER)
        assert response.status == 200, await response.text()
        return [s["saga_id"] for s in (await response.json())["sagas"]]

    assert await ids("") == ["shipped", "stuck", "undone", "ok-2", "ok-1", "ok-0"]
    assert await ids("status=compensated") == ["undone"]
    assert await ids("status=compensated,stuck") == ["stuck", "undone"]
    assert await ids("status=compensated&status=stuck") == ["stuck", "undone"]
    assert await ids("name=ship") == ["shipped"]
    assert await ids("health=stuck") == ["stuck"]
    assert await ids("step=credit") == ["stuck"]
    assert await ids("health=stuck&name=ship") == []
    assert await ids("created_after=0&created_before=2000-01-01T00:00:00Z") == []
    assert await ids("updated_after=2000-01-01T00:00:00") == await ids("")
    first = await (await client.get("/api/sagas?limit=4", headers=VIEWER)).json()
    assert len(first["sagas"]) == 4
    rest = await client.get(f"/api/sagas?limit=4&cursor={first['next_cursor']}", headers=VIEWER)
    rest_body = await rest.json()
    assert [s["saga_id"] for s in rest_body["sagas"]] == ["ok-1", "ok-0"]
    assert rest_body["next_cursor"] is None
    row = first["sagas"][1]
    assert row["status"] == "stuck"
    assert row["health"] == "stuck"
    assert row["current_step"] == "credit"
    for bad in ("status=nope", "health=ill", "limit=0", "limit=x", "cursor=garbage",
                "created_after=yesterday", "dry=1&limit=100000"):  # fmt: skip
        await error_of(await client.get(f"/api/sagas?{bad}", headers=VIEWER), 400)
    # A page token the log did not make is the log's QueryError, answered with its message.
    bad_cursor = await client.get("/api/sagas?cursor=WzEsMiwzXQ", headers=VIEWER)
    assert await error_of(bad_cursor, 400) == "invalid cursor 'WzEsMiwzXQ'"


async def test_a_saga_without_progress_counts_as_stuck() -> None:
    shop, clock = Shop(), FakeClock()
    transport = InMemoryTransport(shop.participants, intercept=lambda c: _lose_credit(c))
    coordinator = Coordinator(
        InMemorySagaLog(), transport, sagas=[order_saga(timeout=timedelta(hours=1))], clock=clock
    )
    config = ApiConfig(stall_after=timedelta(minutes=10))
    async with coordinator, TestClient(TestServer(create_app(coordinator, config))) as client:
        await coordinator.start("order", {}, saga_id="slow")
        await transport.settle()
        fresh = await (await client.get("/api/sagas?health=progressing")).json()
        assert [s["saga_id"] for s in fresh["sagas"]] == ["slow"]
        await clock.advance(timedelta(minutes=11))
        stalled = await (await client.get("/api/sagas?health=stuck")).json()
        assert [s["saga_id"] for s in stalled["sagas"]] == ["slow"]
        assert stalled["sagas"][0]["status"] == "running"
        detail = await (await client.get("/api/sagas/slow")).json()
        assert detail["health"]["state"] == "stuck"
        assert "no progress" in detail["health"]["reason"]
        assert detail["health"]["step"] == "credit"


def _lose_credit(command: Any) -> Any:
    from saga.testing import Fault

    return Fault.LOSE_REPLY if command.step == "credit" else Fault.DELIVER


# -- one saga, compensations and operator actions -----------------------------------------------


async def test_stuck_compensation_is_listed_previewed_and_resolved_with_an_audit(
    client: Client, coordinator: Coordinator, shop: Shop, log: SagaLog
) -> None:
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    saga_id = await start(client, input={"sku": "A", "card": "4111-1111"})
    assert await settled(coordinator, saga_id) is SagaStatus.STUCK

    listed = await (await client.get("/api/compensations", headers=VIEWER)).json()
    [item] = listed["compensations"]
    assert item["saga_id"] == saga_id
    assert item["category"] == "stuck"
    assert (item["step"], item["direction"], item["attempts"]) == ("credit", "compensate", 3)
    assert "payments.release is down" in item["last_error"]["message"]
    assert item["remaining"] == ["credit", "create"]

    detail = await (await client.get(f"/api/sagas/{saga_id}", headers=VIEWER)).json()
    assert detail["input"] == {"sku": "A", "card": "***"}  # redacted by configuration
    assert detail["health"]["state"] == "stuck"
    assert detail["actions"]["resolve"] == {"allowed": True, "reason": None}
    assert detail["actions"]["cancel"]["allowed"] is False
    credit = detail["timeline"]["compensations"][0]
    assert credit["step"] == "credit"
    assert credit["state"] == "stuck"
    assert [a["outcome"] for a in credit["attempts"]] == ["failed"] * 3
    assert detail["timeline"]["compensations"][1]["state"] == "pending"

    url = f"/api/sagas/{saga_id}/actions/resolve"
    no_reason = await client.post(url, json={}, headers=OPERATOR)
    assert "reason is required" in await error_of(no_reason, 422)
    blank = await client.post(url, json={"reason": "   "}, headers=OPERATOR)
    await error_of(blank, 422)
    seq_before = (await log.get(saga_id)).last_seq  # type: ignore[union-attr]
    dry = await client.post(f"{url}?dry_run=1", json={"reason": "refunded"}, headers=OPERATOR)
    preview = await dry.json()
    assert preview["dry_run"] is True
    assert preview["compensations"] == ["create"]
    assert preview["commands"][0]["command"] == "cancel"
    assert (await log.get(saga_id)).last_seq == seq_before  # type: ignore[union-attr]
    conflict = await client.post(
        f"/api/sagas/{saga_id}/actions/cancel", json={"reason": "x"}, headers=OPERATOR
    )
    assert "already compensating" in await error_of(conflict, 409)

    done = await client.post(
        url, json={"reason": "refunded by hand", "actor": "ana.k"}, headers=OPERATOR
    )
    assert done.status == 200
    assert (await done.json())["dry_run"] is False
    assert await settled(coordinator, saga_id) is SagaStatus.COMPENSATED
    final = await (await client.get(f"/api/sagas/{saga_id}", headers=VIEWER)).json()
    [audit] = final["timeline"]["operator_actions"]
    assert audit["action"] == "resolve"
    assert audit["actor"] == "ana.k (token ana)"
    assert audit["reason"] == "refunded by hand"
    assert audit["step"] == "credit"
    assert final["timeline"]["compensations"][0]["state"] == "done_by_hand"
    assert final["timeline"]["compensations"][1]["state"] == "succeeded"
    events = await log.events(saga_id)
    assert sum(e.type is EventType.OPERATOR_ACTION for e in events) == 1
    empty = await (await client.get("/api/compensations", headers=VIEWER)).json()
    assert empty["compensations"] == []


async def test_bad_actions_are_4xx_and_change_nothing(
    client: Client, coordinator: Coordinator, log: SagaLog
) -> None:
    saga_id = await start(client)
    await settled(coordinator, saga_id)
    events_before = await log.events(saga_id)
    base = f"/api/sagas/{saga_id}/actions"
    cases = [
        (f"{base}/cancel", {"reason": "late"}, 409, "already completed"),
        (f"{base}/explode", {"reason": "x"}, 404, "no action 'explode'"),
        ("/api/sagas/ghost/actions/retry", {"reason": "x"}, 404, "no saga 'ghost'"),
        (f"{base}/retry", {"reason": 5}, 422, "reason"),
        (f"{base}/retry", {"reason": "x", "actor": ""}, 422, "actor"),
        (f"{base}/retry", {"reason": "x", "result": {}}, 422, "only for skip"),
        (f"{base}/retry", {"reason": "x" * 2001}, 422, "longer than"),
        (f"{base}/retry?dry_run=maybe", {"reason": "x"}, 400, "dry_run"),
    ]
    for path, body, status, message in cases:
        response = await client.post(path, json=body, headers=OPERATOR)
        assert message in await error_of(response, status), path
    assert await log.events(saga_id) == events_before
    assert (await client.get("/api/sagas/ghost", headers=VIEWER)).status == 404
    assert (await client.get("/api/nothing-here", headers=VIEWER)).status == 404
    wrong_method = await client.delete("/api/sagas", headers=OPERATOR)
    await error_of(wrong_method, 405)


async def test_skip_and_force_forward_show_in_the_timeline(
    client: Client, coordinator: Coordinator, shop: Shop
) -> None:
    shop.fail["inventory.ship"] = 100
    saga_id = await start(client, "ship")
    assert await settled(coordinator, saga_id) is SagaStatus.STUCK
    detail = await (await client.get(f"/api/sagas/{saga_id}", headers=VIEWER)).json()
    assert (
        detail["actions"]["cancel"]["reason"] == "saga is past its pivot; it can only move forward"
    )
    assert detail["actions"]["skip"]["allowed"] is True
    skipped = await client.post(
        f"/api/sagas/{saga_id}/actions/skip",
        json={"reason": "shipped by courier", "result": {"tracking": "T1"}},
        headers=OPERATOR,
    )
    assert skipped.status == 200, await skipped.text()
    assert await settled(coordinator, saga_id) is SagaStatus.COMPLETED
    final = await (await client.get(f"/api/sagas/{saga_id}", headers=VIEWER)).json()
    ship = final["timeline"]["steps"][-1]
    assert ship["state"] == "done_by_hand"
    assert ship["by_hand"]["action"] == "skip"
    assert final["results"]["ship"] == {"tracking": "T1"}


async def test_definitions_list_the_registered_sagas(client: Client) -> None:
    body = await (await client.get("/api/definitions", headers=VIEWER)).json()
    assert [(s["name"], s["version"]) for s in body["sagas"]] == [("order", 1), ("ship", 1)]
    assert [s["kind"] for s in body["sagas"][1]["steps"]] == ["compensatable", "pivot", "retriable"]


async def test_a_stuck_sagas_list_row_shows_its_step_and_attempt(
    client: Client, coordinator: Coordinator, shop: Shop
) -> None:
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 10  # the order saga's FAST policy allows three attempts
    saga_id = await start(client, input={"sku": "A"})
    assert await settled(coordinator, saga_id) is SagaStatus.STUCK
    response = await client.get("/api/sagas?health=stuck", headers=VIEWER)
    (row,) = (await response.json())["sagas"]
    assert row["saga_id"] == saga_id
    assert row["current_step"] == "credit"
    assert row["attempt"] == 3  # the compensation of credit, out of attempts
