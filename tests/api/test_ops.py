"""Event stream, metrics, readiness, and serving beside a coordinator (start_http)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, SagaStatus
from saga.api import ApiConfig, check_exposure, create_app, is_loopback, start_http
from saga.api.config import Role, Token, tokens_from_specs
from saga.testing import InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS, VIEWER, settled, start
from tests.coordinator.shop import Shop

Client = TestClient[Any, Any]


async def read_events(response: Any, until: str) -> list[dict[str, Any]]:
    """Parse server-sent events until one shows status ``until``."""
    found: list[dict[str, Any]] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            found.append(json.loads(line[6:]))
            if found[-1]["status"] == until:
                return found
    return found


async def test_event_stream_carries_every_change(client: Client, coordinator: Coordinator) -> None:
    response = await client.get("/api/events", headers=VIEWER)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    first = await response.content.readline()
    assert first == b"retry: 2000\n"
    saga_id = await start(client)
    changes = await asyncio.wait_for(read_events(response, "completed"), 10)
    assert {c["saga_id"] for c in changes} == {saga_id}
    # The start and its first decision are one write, so one change.
    assert changes[0]["events"] == ["saga_started", "step_sent"], "the first event is streamed"
    assert changes[0]["seq"] == 2
    assert changes[0]["current_step"] == "create"
    streamed = [e for c in changes for e in c["events"]]
    recorded = [e.type.value for e in await coordinator.log.events(saga_id)]
    assert streamed == recorded, "every recorded event, in order"
    assert changes[-1]["events"][-1] == "saga_completed"
    assert [c["seq"] for c in changes] == sorted(c["seq"] for c in changes)
    response.close()


async def test_event_stream_filters_by_saga_and_ends_at_shutdown(
    coordinator: Coordinator,
) -> None:
    server = TestServer(create_app(coordinator, ApiConfig(heartbeat=timedelta(seconds=0.05))))
    async with TestClient(server) as client:
        response = await client.get("/api/events?saga_id=mine")
        await coordinator.start("order", {}, saga_id="other")
        await coordinator.start("order", {}, saga_id="mine")
        changes = await asyncio.wait_for(read_events(response, "completed"), 10)
        assert {c["saga_id"] for c in changes} == {"mine"}
        await settled(coordinator, "other")
    # Leaving the block shut the server down with a stream still open: it did not hang.


async def test_metrics_count_sagas_steps_and_health(
    client: Client, coordinator: Coordinator, shop: Shop
) -> None:
    await settled(coordinator, await start(client))
    shop.reject.add("inventory.reserve")
    await settled(coordinator, await start(client))
    shop.fail["payments.release"] = 100
    stuck = await start(client)
    await settled(coordinator, stuck)
    await client.post(
        f"/api/sagas/{stuck}/actions/resolve", json={"reason": "by hand"}, headers=OPERATOR
    )
    await settled(coordinator, stuck)
    text = await (await client.get("/metrics", headers=VIEWER)).text()

    def sample(name: str, **labels: str) -> float:
        return metric(text, name, **labels)

    assert sample("saga_started_total", saga="order") == 3
    assert sample("saga_finished_total", saga="order", status="completed") == 1
    assert sample("saga_finished_total", saga="order", status="compensated") == 2
    assert sample("saga_stuck_total", saga="order") == 1
    assert sample("saga_compensations_total", saga="order") == 2
    assert sample("saga_operator_actions_total", saga="order", action="resolve") == 1
    assert sample(
        "saga_step_outcomes_total", saga="order", step="credit", direction="compensate",
        outcome="failed",
    ) == 3  # fmt: skip
    assert sample("saga_duration_seconds_count", saga="order", status="compensated") == 2
    assert (
        sample("saga_step_duration_seconds_count", saga="order", step="create", direction="forward")
        == 3
    )
    assert sample("saga_in_flight", saga="order", health="stuck") == 0
    assert sample("saga_in_flight", saga="order", health="progressing") == 0


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (labels in any order)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, value = line.rsplit(" ", 1)
        found_name, _, rest = key.partition("{")
        pairs = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if found_name == name and {k: v.strip('"') for k, v in pairs.items()} == labels:
            return float(value)
    raise KeyError(f"{name}{labels}")


async def test_in_flight_gauge_counts_unfinished_sagas(
    client: Client, coordinator: Coordinator, shop: Shop
) -> None:
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    await settled(coordinator, await start(client))
    text = await (await client.get("/metrics", headers=VIEWER)).text()
    assert metric(text, "saga_in_flight", saga="order", health="stuck") == 1


class _Nats(InMemoryTransport):
    """An in-memory transport that reports a connection state, as NatsTransport does."""

    connected = True

    @property
    def is_connected(self) -> bool:
        return self.connected


async def test_readiness_checks_the_log_and_the_transport() -> None:
    from saga.testing import InMemorySagaLog
    from tests.coordinator.shop import order_saga

    transport = _Nats(Shop().participants)
    log = InMemorySagaLog()
    coordinator = Coordinator(log, transport, sagas=[order_saga()])
    async with coordinator, TestClient(TestServer(create_app(coordinator))) as client:
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["checks"]["transport"] == {"ok": True, "kind": "nats"}
        transport.connected = False
        down = await client.get("/readyz")
        assert down.status == 503
        assert (await down.json())["checks"]["transport"]["ok"] is False
        transport.connected = True
        await log.close()
        no_db = await client.get("/readyz")
        assert no_db.status == 503
        assert "not open" in (await no_db.json())["checks"]["database"]["error"]
        assert (await client.get("/healthz")).status == 200
        await log.open()


async def test_start_http_serves_on_a_free_port(coordinator: Coordinator) -> None:
    server = await start_http(
        coordinator, host="127.0.0.1", port=0, config=ApiConfig(tokens=TOKENS)
    )
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/api/sagas", headers=VIEWER) as response:
                assert response.status == 200
            async with session.get(server.url + "/healthz") as response:
                assert await response.json() == {"status": "ok"}
    finally:
        await server.close()


async def test_exposure_without_tokens_is_refused(coordinator: Coordinator) -> None:
    with pytest.raises(ValueError, match="--insecure"):
        await start_http(coordinator, host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match="without tokens"):
        check_exposure("10.1.2.3", ApiConfig())
    check_exposure("0.0.0.0", ApiConfig(), insecure=True)
    check_exposure("0.0.0.0", ApiConfig(tokens=TOKENS))
    check_exposure("localhost", ApiConfig())
    assert is_loopback("127.0.0.5")
    assert is_loopback("::1")
    assert not is_loopback("::")
    assert not is_loopback("example.com")


def test_token_specs_and_config_validation() -> None:
    tokens = tokens_from_specs(viewers=["vera:abcdefgh1"], operators=["abcdefgh2", " "])
    assert tokens[0] == Token(secret="abcdefgh1", role=Role.VIEWER, name="vera")
    assert tokens[1].role is Role.OPERATOR
    assert tokens[1].name.startswith("operator-")
    assert "abcdefgh2" not in repr(tokens[1])
    with pytest.raises(ValueError, match="8\\+ characters"):
        tokens_from_specs(viewers=["short"])
    with pytest.raises(ValueError, match="twice"):
        ApiConfig(tokens=tokens_from_specs(viewers=["abcdefgh1"], operators=["abcdefgh1"]))
    with pytest.raises(ValueError, match="stall_after"):
        ApiConfig(stall_after=timedelta(0))
    assert ApiConfig(redact=frozenset({"Card"})).redact == frozenset({"card"})


async def test_completed_saga_status(client: Client, coordinator: Coordinator) -> None:
    saga_id = await start(client)
    assert await settled(coordinator, saga_id) is SagaStatus.COMPLETED
