"""`saga show` on a graph: lanes for branches, an accepted step's deadline, a wait's event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner, Result

from saga import Coordinator
from saga.api import ApiConfig, HttpServer, start_http
from saga.cli import main
from saga.log.base import SagaLog
from saga.testing import InMemoryTransport
from tests.api.conftest import TOKENS
from tests.api.test_graph import approval_saga, parallel_saga, participants
from tests.coordinator.shop import Shop


@pytest.fixture
async def server(shop: Shop, log: SagaLog) -> AsyncIterator[tuple[Coordinator, HttpServer]]:
    sagas = [parallel_saga(), approval_saga()]
    async with Coordinator(log, InMemoryTransport(participants(shop)), sagas=sagas) as coordinator:
        server = await start_http(coordinator, port=0, config=ApiConfig(tokens=TOKENS))
        yield coordinator, server
        await server.close()


async def show(url: str, saga_id: str) -> Result:
    """``saga show`` in a thread: it makes blocking HTTP calls to this loop's server."""
    env = {"SAGA_API_URL": url, "SAGA_API_TOKEN": "viewer-secret-1"}
    return await asyncio.to_thread(
        CliRunner().invoke, main, ["show", saga_id], env=env, catch_exceptions=False
    )


async def settled_steps(coordinator: Coordinator, saga_id: str, count: int) -> None:
    """Wait (bounded) until ``count`` steps are accepted, awaiting or done."""
    for _ in range(500):
        events = await coordinator.log.events(saga_id)
        if sum(e.type.value in ("step_accepted", "step_waiting") for e in events) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{saga_id} did not get there")


async def test_show_prints_lanes_deadlines_and_outside_events(
    server: tuple[Coordinator, HttpServer],
) -> None:
    coordinator, http = server
    done = await coordinator.execute("trip", {}, saga_id="trip-1")
    assert done.status.value == "completed"
    shown = await show(http.url, "trip-1")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    header = next(line for line in lines if line.startswith("LANE"))
    assert header.split() == [
        "LANE",
        "STEP",
        "DIRECTION",
        "ATTEMPT",
        "OUTCOME",
        "AT",
        "(UTC)",
        "ERROR",
    ]
    rows = [line.split()[:5] for line in lines[lines.index(header) + 1 :] if line.strip()]
    assert rows[:3] == [
        ["0", "create", "forward", "1", "succeeded"],
        ["1", "credit", "forward", "1", "succeeded"],
        ["0", "stock", "forward", "1", "succeeded"],
    ]

    await coordinator.start("approved", {}, saga_id="approved-1")
    await settled_steps(coordinator, "approved-1", 2)
    await coordinator.signal("approved-1", "manager_approved", event_id="m-7", sender="ana")
    shown = await show(http.url, "approved-1")
    assert shown.exit_code == 0, shown.output
    out = shown.output
    ship = next(line for line in out.splitlines() if line.split()[1:3] == ["ship", "forward"])
    assert "accepted until 20" in ship  # the completion deadline, a date
    assert "in progress:" in out
    assert "outside events:" in out
    event = next(line for line in out.splitlines() if "m-7" in line)
    assert event.split()[2:] == ["manager_approved", "m-7", "ana", "approval"]
