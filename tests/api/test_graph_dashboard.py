"""The dashboard draws a saga's definition as a graph with its progress, in headless Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from saga import Coordinator, SagaStatus
from saga.api import HttpServer
from saga.log.base import SagaLog
from saga.testing import InMemoryTransport
from tests.api.conftest import settled
from tests.api.test_graph import approval_saga, parallel_saga, participants
from tests.coordinator.shop import Shop, order_saga


@pytest.fixture
async def coordinator(shop: Shop, log: SagaLog) -> AsyncIterator[Coordinator]:
    sagas = [order_saga(), parallel_saga(), approval_saga()]
    coordinator = Coordinator(log, InMemoryTransport(participants(shop)), sagas=sagas)
    async with coordinator:
        yield coordinator


async def boxes(page: Any, selector: str) -> dict[str, tuple[str, float, float]]:
    """Each drawn step: its state and the top-left corner of its box."""
    found = await page.eval_on_selector_all(
        selector,
        """gs => gs.map(g => { const r = g.querySelector('rect');
             return [g.dataset.step, g.dataset.state,
                     +r.getAttribute('x'), +r.getAttribute('y')]; })""",
    )
    return {step: (state, x, y) for step, state, x, y in found}


async def test_the_graph_of_a_parallel_saga_shows_its_layers_and_progress(
    page: Any, server: HttpServer, coordinator: Coordinator, shop: Shop, shots: Path
) -> None:
    shop.reject.add("inventory.reserve")
    saga = await coordinator.start("trip", {"sku": "A"}, saga_id="trip-compensated")
    assert await settled(coordinator, saga.saga_id) is SagaStatus.COMPENSATED

    await page.goto(server.url + "/#/saga/trip-compensated")
    await page.wait_for_selector("svg#graph g.node")
    nodes = await boxes(page, "svg#graph g.node")
    assert {step: state for step, (state, _, _) in nodes.items()} == {
        "create": "compensated", "credit": "compensated", "stock": "rejected",
    }  # fmt: skip
    # Layered by dependency depth: the two branches in one column, one above the other.
    assert nodes["create"][1] == nodes["credit"][1] < nodes["stock"][1]
    assert nodes["create"][2] != nodes["credit"][2]
    assert await page.locator("svg#graph path.edge").count() == 2
    status = await page.text_content('svg#graph g.node[data-step="stock"] text.status')
    assert status.startswith("rejected")

    # The timeline draws the branches side by side too, and their compensations below.
    forward = await boxes(page, "svg g.step.forward")
    assert forward["create"][1] == forward["credit"][1] < forward["stock"][1]
    back = await boxes(page, "svg g.step.compensation")
    assert {step: state for step, (state, _, _) in back.items()} == {
        "create": "succeeded", "credit": "succeeded",
    }  # fmt: skip
    assert back["create"][1] == back["credit"][1]  # under their steps' column
    assert min(y for _, _, y in back.values()) > max(y for _, _, y in forward.values())
    # The story as a picture on a graph saga too: the branches undone, the reason in words.
    story = await page.inner_text("#story")
    assert story == "Compensated because inventory.reserve was refused: inventory.reserve says no."
    undone = await page.eval_on_selector_all(
        "#timeline g.step.forward.undone", "gs => gs.map(g => g.dataset.step)"
    )
    assert sorted(undone) == ["create", "credit"]
    assert await page.locator("#timeline path.undo-arrow").count() == 2
    assert "0:00:" not in await page.inner_text("body")
    shot = shots / "graph-saga.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


async def test_a_running_sagas_graph_shows_pending_steps(
    page: Any, server: HttpServer, coordinator: Coordinator, shop: Shop
) -> None:
    shop.fail["payments.release"] = 100
    shop.reject.add("inventory.reserve")
    saga = await coordinator.start("trip", {}, saga_id="trip-stuck")
    assert await settled(coordinator, saga.saga_id) is SagaStatus.STUCK
    await page.goto(server.url + "/#/saga/trip-stuck")
    await page.wait_for_selector("svg#graph g.node")
    nodes = await boxes(page, "svg#graph g.node")
    assert nodes["credit"][0] == "stuck"
    assert nodes["stock"][0] == "rejected"
    title = await page.text_content('svg#graph g.node[data-step="stock"] title')
    assert "after create, credit" in title


async def test_accepted_and_waiting_steps_show_their_deadline_and_event(
    page: Any, server: HttpServer, coordinator: Coordinator, shots: Path
) -> None:
    await coordinator.start("approved", {}, saga_id="approved-1")
    await page.goto(server.url + "/#/saga/approved-1")
    # Live updates redraw the page as the saga moves; wait for both to be under way.
    await page.wait_for_selector('svg#graph g.node[data-step="ship"][data-state="accepted"]')
    await page.wait_for_selector('svg#graph g.node[data-step="approval"][data-state="awaiting"]')
    ship = await page.text_content('svg#graph g.node[data-step="ship"] text.detail')
    assert ship is not None
    assert ship.startswith("until ")
    approval = await page.text_content('svg#graph g.node[data-step="approval"]')
    assert approval is not None
    assert "wait for manager_approved" in approval
    assert "awaitinguntil " in approval  # the state, then the wait's timeout
    state = page.locator('svg g.step.forward[data-step="approval"] text.state')
    # Cut to fit its box when it must, the whole text kept beside it.
    full = await state.get_attribute("data-full") or await state.text_content()
    assert full == "awaiting manager_approved"
    assert (await page.inner_text("#story")) == "Running: ship, approval in progress."
    took = await page.locator('#attempts tr[data-step="ship"] td.took').inner_text()
    assert took.startswith("open for ")
    assert await page.get_attribute("#story", "class") == "story present progress"
    pay = await page.get_attribute('svg#graph g.node[data-step="pay"]', "data-state")
    assert pay == "pending"
    forward = await boxes(page, "svg g.step.forward")
    assert forward["ship"][0] == "accepted"
    assert forward["approval"][0] == "awaiting"
    assert forward["ship"][1] == forward["approval"][1]  # side by side, in one column
    assert forward["ship"][2] != forward["approval"][2]
    rows = await page.eval_on_selector_all(
        "#active tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.innerText))"
    )
    assert [r[:3] for r in rows] == [
        ["ship", "forward", "accepted"], ["approval", "forward", "awaiting"],
    ]  # fmt: skip
    assert rows[0][4].startswith("completes by ")
    assert rows[1][4].startswith("waits for manager_approved until ")
    await page.screenshot(path=str(shots / "accepted-and-waiting.png"), full_page=True)

    await coordinator.signal("approved-1", "manager_approved", event_id="m-1", sender="ana")
    await page.wait_for_selector('svg#graph g.node[data-step="approval"][data-state="succeeded"]')
    await page.wait_for_selector('#signals tr[data-signal="m-1"]')
    cells = await page.locator('#signals tr[data-signal="m-1"] td').all_inner_texts()
    assert cells[1:] == ["manager_approved", "m-1", "ana", "approval"]
