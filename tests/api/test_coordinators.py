"""Operating from any coordinator: /api/coordinators, owners in the saga views, operator
actions through another coordinator's API, and the ownership metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, SagaStatus, SqlSagaLog
from saga.api import ApiConfig, create_app, document
from saga.errors import LogError
from saga.log.ownership import Census
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS, VIEWER, settled
from tests.api.test_browser_safety import hold_saga
from tests.coordinator.shop import Shop, order_saga

LEASE_MS = 1000
"""Short, so the load shows up within a quarter second (the renewal), yet no lease lapses
on a loaded machine."""


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 30) -> None:
    async with asyncio.timeout(within_s):
        while not await check():  # noqa: ASYNC110 (polls the API and the log)
            await asyncio.sleep(0.05)


@dataclass
class Pair:
    """Two coordinators on one in-memory log, each serving its own API."""

    log: InMemorySagaLog
    shop: Shop
    release: asyncio.Event
    a: Coordinator
    b: Coordinator
    api_a: TestClient[Any, Any]
    api_b: TestClient[Any, Any]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    log, shop, release = InMemorySagaLog(), Shop(), asyncio.Event()
    hold, slow = hold_saga(release)

    def make(name: str, api_url: str | None) -> Coordinator:
        transport = InMemoryTransport([*shop.participants, slow])
        return Coordinator(
            log, transport, sagas=[order_saga(), hold], name=name, lease_ms=LEASE_MS,
            api_url=api_url,
        )  # fmt: skip

    a, b = make("alpha", "http://alpha.example:8080"), make("beta", None)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(a)
        await stack.enter_async_context(b)
        config = ApiConfig(tokens=TOKENS)
        api_a = await stack.enter_async_context(TestClient(TestServer(create_app(a, config))))
        api_b = await stack.enter_async_context(TestClient(TestServer(create_app(b, config))))
        yield Pair(log, shop, release, a, b, api_a, api_b)
        release.set()  # nothing held in flight at close


async def coordinators(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/api/coordinators", headers=VIEWER)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["coordinators"]}


async def test_every_coordinator_lists_the_live_and_recently_ended_ones(pair: Pair) -> None:
    a, b = pair.a, pair.b
    ownership = pair.log.ownership
    await ownership.join("gone-1", "gone", 60_000, "http://gone.example")
    await ownership.leave("gone-1")
    await ownership.join("ghost-1", "ghost", 100)  # never renewed: its lease runs out

    async def ghost_expired() -> bool:
        return by_name(await coordinators(pair.api_a))["ghost"]["state"] == "expired"

    await eventually(ghost_expired)
    seen_a, seen_b = await coordinators(pair.api_a), await coordinators(pair.api_b)
    assert (seen_a["this"], seen_b["this"]) == (a.coordinator_id, b.coordinator_id)
    assert seen_a["lease_ms"] == LEASE_MS
    now = seen_a["now_ms"]
    found = by_name(seen_a)
    assert sorted(found) == ["alpha", "beta", "ghost", "gone"]
    alpha, beta, gone, ghost = found["alpha"], found["beta"], found["gone"], found["ghost"]
    assert alpha["coordinator_id"] == a.coordinator_id
    assert (alpha["state"], alpha["self"], alpha["api_url"]) == (
        "live", True, "http://alpha.example:8080",
    )  # fmt: skip
    assert (beta["state"], beta["self"], beta["api_url"]) == ("live", False, None)
    assert [c["self"] for c in seen_b["coordinators"]] == [False, True, False, False]
    for live in (alpha, beta):
        assert live["started_ms"] <= live["renewed_ms"] <= now < live["lease_until_ms"]
        assert live["lease_until_ms"] <= now + LEASE_MS
        assert live["stopped_ms"] is None
    assert gone["state"] == "stopped"
    assert gone["stopped_ms"] is not None
    assert gone["stopped_ms"] <= now
    assert gone["api_url"] == "http://gone.example"
    assert ghost["state"] == "expired"
    assert ghost["stopped_ms"] is None
    assert ghost["lease_until_ms"] < now

    # The load each reported at its last renewal: alpha drives a saga with a command out.
    await a.start("hold", {}, saga_id="held")

    async def alpha_busy() -> bool:
        alpha = by_name(await coordinators(pair.api_b))["alpha"]
        return (alpha["sagas"], alpha["in_flight"]) == (1, 1)

    await eventually(alpha_busy)
    assert by_name(await coordinators(pair.api_b))["beta"]["sagas"] == 0
    # Viewers read it; no token, no answer.
    assert (await pair.api_a.get("/api/coordinators")).status == 401


async def test_the_document_names_every_field_of_a_coordinator(pair: Pair) -> None:
    schemas = document()["components"]["schemas"]
    body = await coordinators(pair.api_a)
    assert set(schemas["Coordinators"]["required"]) == set(body)
    for entry in body["coordinators"]:
        assert set(schemas["Coordinator"]["required"]) == set(entry)
        assert set(schemas["Coordinator"]["properties"]) == set(entry)
    listed = await (await pair.api_a.get("/api/sagas", headers=VIEWER)).json()
    assert listed["sagas"] == []
    await pair.a.start("hold", {}, saga_id="held")
    listed = await (await pair.api_a.get("/api/sagas", headers=VIEWER)).json()
    [row] = listed["sagas"]
    assert set(schemas["SagaSummary"]["properties"]) == set(row)
    detail = await (await pair.api_a.get("/api/sagas/held", headers=VIEWER)).json()
    assert {"owner", "epoch"} <= set(schemas["SagaDetail"]["properties"])
    assert set(schemas["SagaDetail"]["properties"]) <= set(detail)


async def detail(client: TestClient[Any, Any], saga_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/sagas/{saga_id}", headers=VIEWER)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def act(client: TestClient[Any, Any], saga_id: str, action: str) -> dict[str, Any]:
    response = await client.post(
        f"/api/sagas/{saga_id}/actions/{action}",
        json={"reason": f"{action} from the other coordinator"},
        headers=OPERATOR,
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def metrics(client: TestClient[Any, Any]) -> str:
    response = await client.get("/metrics", headers=VIEWER)
    assert response.status == 200
    return await response.text()


def sample(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


async def test_an_operator_acts_through_another_coordinator_which_takes_the_saga(
    pair: Pair,
) -> None:
    a, b, shop = pair.a, pair.b, pair.shop
    # A saga stuck on alpha (its compensation keeps failing), and one held running there.
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 10**6
    await a.start("order", {}, saga_id="stuck")
    assert await settled(a, "stuck") is SagaStatus.STUCK
    await a.start("hold", {}, saga_id="held")

    # beta's API lists and shows the sagas alpha started, owned by alpha.
    listed = await (await pair.api_b.get("/api/sagas", headers=VIEWER)).json()
    owners = {s["saga_id"]: s["owner"] for s in listed["sagas"]}
    assert owners == {"stuck": a.coordinator_id, "held": a.coordinator_id}
    before = await detail(pair.api_b, "stuck")
    assert before["owner"] == a.coordinator_id

    # Retry the stuck one through beta: beta takes it (a new epoch) and drives it.
    assert (await act(pair.api_b, "stuck", "retry"))["action"] == "retry"
    after = await detail(pair.api_b, "stuck")
    assert (after["owner"], after["epoch"]) == (b.coordinator_id, before["epoch"] + 1)
    assert [x["reason"] for x in after["timeline"]["operator_actions"]] == [
        "retry from the other coordinator"
    ]
    assert await settled(b, "stuck") is SagaStatus.STUCK  # release still fails: stuck again
    assert (await detail(pair.api_a, "stuck"))["owner"] == b.coordinator_id

    # Cancel the held one through beta while alpha still waits for its command's reply.
    assert (await detail(pair.api_a, "held"))["owner"] == a.coordinator_id
    await act(pair.api_b, "held", "cancel")
    assert (await detail(pair.api_a, "held"))["owner"] == b.coordinator_id
    pair.release.set()
    result = await asyncio.wait_for(b.wait("held"), 30)
    assert result.status is SagaStatus.COMPENSATED

    # alpha's answer for it came late: its write was fenced, so the log is beta's alone.
    async def alpha_fenced() -> bool:
        return a.fenced_writes == 1

    await eventually(alpha_fenced)
    audit = await pair.log.ownership.audit()
    assert (audit.taken_over, audit.driven_by_two) == (2, 0)

    # Counted in alpha's metrics at once, and in the log at alpha's next renewal.
    text_a, text_b = await metrics(pair.api_a), await metrics(pair.api_b)
    assert sample(text_a, "saga_fenced_writes_total") == 1
    assert sample(text_b, "saga_fenced_writes_total") == 0
    assert sample(text_b, "saga_claimed_sagas_total") == 2
    assert sample(text_a, "saga_coordinators_live") == 2
    assert sample(text_b, "saga_coordinators_live") == 2

    async def fenced_reported() -> bool:
        return by_name(await coordinators(pair.api_b))["alpha"]["fenced_writes"] == 1

    await eventually(fenced_reported)


async def test_ownership_metrics_of_one_coordinator(
    client: TestClient[Any, Any], coordinator: Coordinator, shop: Shop
) -> None:
    text = await metrics(client)
    assert "# TYPE saga_fenced_writes_total counter" in text
    assert "# TYPE saga_owned_sagas gauge" in text
    for name in (
        "saga_fenced_writes_total", "saga_claimed_sagas_total", "saga_released_sagas_total",
        "saga_leases_lost_total", "saga_owned_sagas",
    ):  # fmt: skip
        assert sample(text, name) == 0, name
    assert sample(text, "saga_coordinators_live") == 1

    await coordinator.start("order", {}, saga_id="done")
    assert await settled(coordinator, "done") is SagaStatus.COMPLETED
    assert sample(await metrics(client), "saga_owned_sagas") == 0  # finished: nobody's
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 10**6
    await coordinator.start("order", {}, saga_id="stuck")
    assert await settled(coordinator, "stuck") is SagaStatus.STUCK
    # A stuck saga stays this coordinator's until an operator acts on it.
    assert sample(await metrics(client), "saga_owned_sagas") == 1


async def test_a_scrape_answers_without_the_census_when_the_log_does_not(
    client: TestClient[Any, Any], log: InMemorySagaLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> Census:
        raise LogError("the database is down")

    async def slow() -> Census:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    for census in (broken, slow):
        monkeypatch.setattr(log.ownership, "census", census)
        async with asyncio.timeout(10):
            text = await metrics(client)
        assert "saga_coordinators_live" not in text
        assert sample(text, "saga_fenced_writes_total") == 0
    monkeypatch.undo()
    assert sample(await metrics(client), "saga_coordinators_live") == 1


async def test_coordinators_and_owners_over_a_sql_log(sql_url: str, shop: Shop) -> None:
    first = Coordinator(
        SqlSagaLog(sql_url), InMemoryTransport(shop.participants), sagas=[order_saga()],
        name="first",
    )  # fmt: skip
    async with first:
        await first.start("order", {"sku": "A"}, saga_id="early")
        await settled(first, "early")
    second = Coordinator(
        SqlSagaLog(sql_url), InMemoryTransport(shop.participants), sagas=[order_saga()],
        name="second", api_url="https://second.example",
    )  # fmt: skip
    async with second:
        app = create_app(second, ApiConfig(tokens=TOKENS))
        async with TestClient(TestServer(app)) as client:
            await client.post("/api/sagas/order", json={"saga_id": "late"}, headers=OPERATOR)
            assert await settled(second, "late") is SagaStatus.COMPLETED
            body = await coordinators(client)
            text = await metrics(client)
            early, late = await detail(client, "early"), await detail(client, "late")
    assert body["this"] == second.coordinator_id
    assert body["lease_ms"] == 10_000
    found = by_name(body)
    assert sorted(found) == ["first", "second"]
    assert (found["first"]["state"], found["first"]["self"]) == ("stopped", False)
    assert found["first"]["coordinator_id"] == first.coordinator_id
    assert found["first"]["stopped_ms"] <= body["now_ms"]
    assert (found["second"]["state"], found["second"]["self"]) == ("live", True)
    assert found["second"]["api_url"] == "https://second.example"
    assert found["second"]["coordinator_id"] == second.coordinator_id
    assert found["second"]["lease_until_ms"] > body["now_ms"]
    assert early["owner"] == first.coordinator_id  # a finished saga keeps its last owner
    assert late["owner"] == second.coordinator_id
    assert late["epoch"] >= 1
    assert sample(text, "saga_coordinators_live") == 1
    assert sample(text, "saga_owned_sagas") == 0
