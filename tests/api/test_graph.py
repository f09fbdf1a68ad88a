"""The API on graphs: definitions with their dependencies, and a parallel saga's timeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, Saga, SagaStatus, SqlSagaLog, Step, StepKind
from saga.api import ApiConfig, create_app
from saga.definition import Wait
from saga.log.base import SagaLog
from saga.protocol import Command, Direction, Reply
from saga.testing import InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS, VIEWER, settled, start
from tests.coordinator.shop import FAST, Shop, order_saga

Client = TestClient[Any, Any]


def parallel_saga() -> Saga:
    """create and credit start together; stock waits for both."""
    return Saga(
        name="trip",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel",
                 retry=FAST, compensation_retry=FAST, after=()),
            Step(name="credit", service="payments", command="reserve", compensation="release",
                 retry=FAST, compensation_retry=FAST, after=()),
            Step(name="stock", service="inventory", command="reserve", compensation="release",
                 retry=FAST, compensation_retry=FAST, after=("create", "credit")),
        ),
    )  # fmt: skip


def approval_saga() -> Saga:
    """A long-running step and a wait beside it, then a pivot after both."""
    return Saga(
        name="approved",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel"),
            Step(name="ship", service="carrier", command="ship", compensation="cancel",
                 completion_timeout=timedelta(hours=4), poll_every=timedelta(minutes=1)),
            Wait(name="approval", event="manager_approved", timeout=timedelta(days=2),
                 after=("create",)),
            Step(name="pay", service="payments", command="reserve", kind=StepKind.PIVOT,
                 after=("ship", "approval")),
        ),
    )  # fmt: skip


class Carrier:
    """A long-running service: it accepts every shipment (to complete it hours later) and
    cancels at once. Duck-typed as a participant: the SDK's side is another change's."""

    name = "carrier"
    commands = frozenset({"ship", "cancel"})

    async def handle(self, command: Command) -> Reply:
        if command.direction is Direction.FORWARD:
            return Reply.accepted(command.idempotency_key)
        return Reply.succeeded({})


def participants(shop: Shop) -> list[Any]:
    return [*shop.participants, Carrier()]


@pytest.fixture
async def graph_coordinator(shop: Shop, log: SagaLog) -> AsyncIterator[Coordinator]:
    sagas = [order_saga(), parallel_saga(), approval_saga()]
    coordinator = Coordinator(log, InMemoryTransport(participants(shop)), sagas=sagas)
    async with coordinator:
        yield coordinator


@pytest.fixture
async def graph_client(graph_coordinator: Coordinator) -> AsyncIterator[Client]:
    config = ApiConfig(tokens=TOKENS, redact=frozenset({"card"}))
    async with TestClient(TestServer(create_app(graph_coordinator, config))) as client:
        yield client


async def test_definitions_give_each_steps_dependencies_depth_and_kind(
    graph_client: Client,
) -> None:
    body = await (await graph_client.get("/api/definitions", headers=VIEWER)).json()
    found = {s["name"]: s for s in body["sagas"]}
    assert sorted(found) == ["approved", "order", "trip"]
    order = found["order"]
    assert order["sequence"] is True
    assert [(s["name"], s["after"], s["depth"]) for s in order["steps"]] == [
        ("create", [], 0), ("credit", ["create"], 1), ("stock", ["credit"], 2),
    ]  # fmt: skip
    create = order["steps"][0]
    assert (create["service"], create["command"], create["compensation"]) == (
        "orders", "create", "cancel",
    )  # fmt: skip
    assert (create["kind"], create["long_running"], create["event"]) == (
        "compensatable", False, None,
    )  # fmt: skip
    trip = found["trip"]
    assert trip["sequence"] is False
    assert [(s["name"], s["after"], s["depth"]) for s in trip["steps"]] == [
        ("create", [], 0), ("credit", [], 0), ("stock", ["create", "credit"], 1),
    ]  # fmt: skip
    approved = {s["name"]: s for s in found["approved"]["steps"]}
    assert found["approved"]["events"] == ["manager_approved"]
    ship = approved["ship"]
    assert (ship["after"], ship["long_running"]) == (["create"], True)
    assert (ship["completion_timeout_ms"], ship["poll_every_ms"]) == (4 * 3600_000, 60_000)
    approval = approved["approval"]
    assert approval == {
        "name": "approval", "after": ["create"], "depth": 1, "kind": "wait",
        "service": None, "command": None, "compensation": None,
        "event": "manager_approved", "timeout_ms": 2 * 86400_000,
        "long_running": False, "completion_timeout_ms": None, "poll_every_ms": None,
    }  # fmt: skip
    assert (approved["pay"]["kind"], approved["pay"]["after"], approved["pay"]["depth"]) == (
        "pivot", ["ship", "approval"], 2,
    )  # fmt: skip


async def test_a_parallel_sagas_timeline_has_dependencies_lanes_and_times(
    graph_client: Client, graph_coordinator: Coordinator
) -> None:
    saga_id = await start(graph_client, "trip", input={"card": "4111"})
    assert await settled(graph_coordinator, saga_id) is SagaStatus.COMPLETED
    detail = await (await graph_client.get(f"/api/sagas/{saga_id}", headers=VIEWER)).json()
    steps = {e["step"]: e for e in detail["timeline"]["steps"]}
    assert list(steps) == ["create", "credit", "stock"]
    assert [steps[n]["after"] for n in steps] == [[], [], ["create", "credit"]]
    for entry in steps.values():
        assert entry["state"] == "succeeded"
        assert entry["started_ms"] <= entry["ended_ms"]
        assert "started_seq" not in entry
    # The branches were in flight together: side by side; stock goes on in the first lane.
    assert [steps[n]["lane"] for n in steps] == [0, 1, 0]
    assert steps["stock"]["started_ms"] >= max(steps[n]["ended_ms"] for n in ("create", "credit"))
    assert detail["active"] == []
    assert detail["definition"]["steps"][2]["depth"] == 1
    assert detail["timeline"]["signals"] == []
    assert detail["input"] == {"card": "***"}


async def test_a_failed_branch_compensates_the_others_and_shows_what_is_left(
    graph_client: Client, graph_coordinator: Coordinator, shop: Shop
) -> None:
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    saga_id = await start(graph_client, "trip")
    assert await settled(graph_coordinator, saga_id) is SagaStatus.STUCK
    detail = await (await graph_client.get(f"/api/sagas/{saga_id}", headers=OPERATOR)).json()
    steps = {e["step"]: e["state"] for e in detail["timeline"]["steps"]}
    assert steps == {"create": "succeeded", "credit": "succeeded", "stock": "rejected"}
    comps = {e["step"]: e for e in detail["timeline"]["compensations"]}
    assert comps["credit"]["state"] == "stuck"
    # create and credit are independent: neither compensation waits for the other.
    assert comps["credit"]["after"] == []
    assert comps["create"]["after"] == []
    assert comps["create"]["state"] in ("succeeded", "pending")


async def poll_saga(client: Client, saga_id: str, until: Any) -> dict[str, Any]:
    """GET the saga (bounded, 10 s) until ``until(detail)`` holds."""
    for _ in range(500):
        detail: dict[str, Any] = await (
            await client.get(f"/api/sagas/{saga_id}", headers=VIEWER)
        ).json()
        if until(detail):
            return detail
        await asyncio.sleep(0.02)
    raise AssertionError(f"saga {saga_id} never got there: {detail}")


def phases(detail: dict[str, Any]) -> dict[str, str]:
    return {a["step"]: a["phase"] for a in detail["active"]}


async def test_an_accepted_step_and_a_wait_in_flight_together_then_the_event_arrives(
    graph_client: Client, graph_coordinator: Coordinator
) -> None:
    before = graph_coordinator.clock.now_ms()
    saga_id = await start(graph_client, "approved", input={"card": "4111"})
    detail = await poll_saga(
        graph_client,
        saga_id,
        lambda d: phases(d) == {"ship": "accepted", "approval": "awaiting"},
    )
    active = {a["step"]: a for a in detail["active"]}
    ship, approval = active["ship"], active["approval"]
    assert (ship["direction"], ship["attempt"], ship["service"], ship["command"]) == (
        "forward", 1, "carrier", "ship",
    )  # fmt: skip
    assert ship["deadline_ms"] >= before + 4 * 3600_000
    assert (ship["heartbeats"], ship["waiting_for"], ship["timeout_at_ms"]) == (0, None, None)
    assert (approval["waiting_for"], approval["service"], approval["deadline_ms"]) == (
        "manager_approved", None, None,
    )  # fmt: skip
    assert approval["timeout_at_ms"] >= before + 2 * 86400_000
    steps = {e["step"]: e for e in detail["timeline"]["steps"]}
    assert (steps["ship"]["state"], steps["approval"]["state"]) == ("accepted", "awaiting")
    assert steps["ship"]["attempts"][0]["deadline_ms"] == ship["deadline_ms"]
    assert steps["ship"]["attempts"][0]["accepted_ms"] >= before
    assert steps["approval"]["event"] == "manager_approved"
    assert steps["approval"]["attempts"][0]["deadline_ms"] == approval["timeout_at_ms"]
    assert steps["ship"]["lane"] != steps["approval"]["lane"]
    assert (steps["pay"]["state"], steps["pay"]["after"]) == ("pending", ["ship", "approval"])
    assert detail["signals"] == []

    received = await graph_coordinator.signal(
        saga_id, "manager_approved", event_id="m-1", payload={"by": "ann", "card": "x"},
        sender="ana",
    )  # fmt: skip
    assert received.recorded
    detail = await poll_saga(graph_client, saga_id, lambda d: phases(d) == {"ship": "accepted"})
    [signal] = detail["signals"]
    assert signal["at_ms"] >= before
    del signal["at_ms"]
    assert signal == {
        "event": "manager_approved", "id": "m-1", "sender": "ana", "step": "approval",
        "payload": {"by": "ann", "card": "***"},
    }  # fmt: skip
    steps = {e["step"]: e for e in detail["timeline"]["steps"]}
    assert (steps["approval"]["state"], steps["approval"]["signal"]) == ("succeeded", "m-1")
    assert detail["timeline"]["signals"][0]["payload"]["card"] == "***"
    assert detail["results"]["approval"] == {"by": "ann", "card": "***"}


async def test_over_a_sql_log_a_restarted_coordinator_shows_the_same_branches(
    sql_url: str, shop: Shop
) -> None:
    config = ApiConfig(tokens=TOKENS, redact=frozenset({"card"}))
    sagas = [approval_saga()]
    first = Coordinator(SqlSagaLog(sql_url), InMemoryTransport(participants(shop)), sagas=sagas)
    async with first, TestClient(TestServer(create_app(first, config))) as client:
        saga_id = await start(client, "approved", saga_id="sql-1")
        await poll_saga(client, saga_id, lambda d: len(d["active"]) == 2)
        await first.signal(saga_id, "manager_approved", event_id="m-1", payload={"card": "1"})
        before = await poll_saga(client, saga_id, lambda d: phases(d) == {"ship": "accepted"})
    # Another coordinator on the same database replays the log (format 2 events included).
    again = Coordinator(SqlSagaLog(sql_url), InMemoryTransport(participants(shop)), sagas=sagas)
    async with again, TestClient(TestServer(create_app(again, config))) as client:
        after = await poll_saga(client, saga_id, lambda d: phases(d) == {"ship": "accepted"})
    for key in ("signals", "timeline", "definition"):
        assert after[key] == before[key], key
    [signal] = after["signals"]
    assert (signal["id"], signal["step"], signal["payload"]) == ("m-1", "approval", {"card": "***"})
    [ship] = after["active"]
    assert ship["deadline_ms"] == before["active"][0]["deadline_ms"]
    lanes = {e["step"]: e["lane"] for e in after["timeline"]["steps"]}
    assert lanes == {"create": 0, "ship": 0, "approval": 1, "pay": None}
