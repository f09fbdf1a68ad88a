"""The operator pages in a real headless Chromium: overview counts that match the API, drill
down, search, inbox actions, bulk dry run then confirm, by-hand badges, switching tokens."""

# The page, server and shots fixtures come from test_dashboard; tests name them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from saga import Coordinator, RetryPolicy, Saga, SagaStatus, Step, StepKind
from saga.api import HttpServer
from saga.events import Health
from saga.log.base import SagaLog
from saga.testing import InMemoryTransport
from tests.api.conftest import OPERATOR, reaches, settled
from tests.api.test_dashboard import page  # noqa: F401 - fixture (server, shots: conftest)
from tests.coordinator.shop import Shop, order_saga, pivot_saga


def deliver_saga() -> Saga:
    """Past its pivot, delivery is retried slowly without limit: it needs attention."""
    slow = RetryPolicy(initial_interval=timedelta(seconds=30), max_interval=timedelta(seconds=60),
                       max_attempts=None)  # fmt: skip
    return Saga(
        name="deliver",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel"),
            Step(name="approve", service="orders", command="approve", kind=StepKind.PIVOT),
            Step(
                name="ship",
                service="inventory",
                command="ship",
                kind=StepKind.RETRIABLE,
                retry=slow,
            ),
        ),
    )


def refund_saga() -> Saga:
    return Saga(
        name="refund",
        steps=(Step(name="credit", service="payments", command="reserve", compensation="release"),),
    )


@pytest.fixture
async def coordinator(shop: Shop, log: SagaLog) -> AsyncIterator[Coordinator]:
    sagas = [order_saga(), pivot_saga(), deliver_saga(), refund_saga()]
    coordinator = Coordinator(log, InMemoryTransport(shop.participants), sagas=sagas)
    async with coordinator:
        yield coordinator


async def _eventually(check: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _shop_floor(coordinator: Coordinator, shop: Shop, log: SagaLog) -> None:
    """Several saga names; some completed, one compensated, three stuck, one needing attention."""
    for i in range(4):
        await coordinator.start(
            "order", {"sku": f"A-{i}", "customer": "ann"}, saga_id=f"order-ok-{i}"
        )
        await settled(coordinator, f"order-ok-{i}")
    for i in range(2):
        await coordinator.start("ship", {"sku": "S"}, saga_id=f"ship-{i}")
        await coordinator.start("refund", {"amount": 10 + i}, saga_id=f"refund-{i}")
        await settled(coordinator, f"ship-{i}")
        await settled(coordinator, f"refund-{i}")
    shop.reject.add("inventory.reserve")
    await coordinator.start("order", {"sku": "B", "customer": "bob"}, saga_id="order-undone")
    assert await settled(coordinator, "order-undone") is SagaStatus.COMPENSATED
    shop.fail["payments.release"] = 1000
    for i in range(3):
        await coordinator.start("order", {"sku": "C", "customer": "cy"}, saga_id=f"order-stuck-{i}")
        assert await settled(coordinator, f"order-stuck-{i}") is SagaStatus.STUCK
    shop.fail["inventory.ship"] = 1000
    await coordinator.start("deliver", {"sku": "D"}, saga_id="deliver-1")

    async def needs_attention() -> bool:
        record = await log.get("deliver-1")
        return record is not None and record.health is Health.NEEDS_ATTENTION

    await _eventually(needs_attention)


async def _get(server: HttpServer, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + path, headers=OPERATOR) as response,
    ):
        assert response.status == 200
        return await response.json()


async def test_overview_drill_down_search_inbox_and_bulk(
    page: Any, server: HttpServer, coordinator: Coordinator, shop: Shop, log: SagaLog,
    shots: Path,
) -> None:  # fmt: skip
    await _shop_floor(coordinator, shop, log)
    stats = await _get(server, "/api/stats?minutes=15")

    # The overview: every count as the API gives it, and the trouble counts in the navigation.
    await page.goto(server.url + "/#/overview?minutes=15")
    await page.wait_for_selector("#status-counts")
    for status, count in stats["statuses"].items():
        shown = await page.inner_text(f'a[data-count="status:{status}"] .count-number')
        assert shown == str(count), status
    for health, count in stats["healths"].items():
        shown = await page.inner_text(f'a[data-count="health:{health}"] .count-number')
        assert shown == str(count), health
    await page.wait_for_selector('#nav-stuck[data-count="3"]')
    await page.wait_for_selector('#nav-attention[data-count="1"]')
    bars = page.locator('svg[data-chart="started"] rect.bar')
    assert await bars.count() >= 1
    assert await page.locator("#by-name a.hbar").count() == 3  # order, ship, refund finished
    failing = await page.text_content("#failing-steps") or ""
    assert "order · stock" in failing
    assert "deliver · ship" in failing
    await page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # Drill down: a count opens the list with that filter.
    await page.click('a[data-count="status:compensated"]')
    await page.wait_for_selector('#saga-rows tr[data-saga="order-undone"]')
    assert await page.locator("#saga-rows tr[data-saga]").count() == 1
    # ...and a bar opens the sagas started in that minute.
    await page.goto(server.url + "/#/overview?minutes=15")
    bar = page.locator('svg[data-chart="started"] rect.bar').last
    started = int(await bar.get_attribute("data-value") or 0)
    await bar.click()
    await page.wait_for_selector("#search-terms")
    await page.wait_for_selector("#saga-rows tr[data-saga]")
    assert await page.locator("#saga-rows tr[data-saga]").count() == started

    # Search: an exact id opens the saga; field=value searches the input.
    await page.fill("#search", "order-ok-2")
    await page.press("#search", "Enter")
    await page.wait_for_url("**/#/saga/order-ok-2")
    await page.fill("#search", "customer=bob")
    await page.press("#search", "Enter")
    await page.wait_for_selector('#saga-rows tr[data-saga="order-undone"]')
    assert await page.locator("#saga-rows tr[data-saga]").count() == 1
    await page.fill("#search", "refund-*")
    await page.press("#search", "Enter")
    await page.wait_for_selector('#saga-rows tr[data-saga="refund-1"]')
    assert await page.locator("#saga-rows tr[data-saga]").count() == 2

    # The inbox: why, where, since when, and the actions that fit, in place.
    await page.click('nav a[data-nav="inbox"]')
    await page.wait_for_selector('#inbox-table tr[data-saga="order-stuck-0"]')
    assert await page.locator("#inbox-table tbody tr[data-saga]").count() == 4
    row = page.locator('#inbox-table tr[data-saga="order-stuck-0"]')
    text = await row.inner_text()
    assert "payments.release is down" in text
    attention = page.locator('#inbox-table tr[data-saga="deliver-1"]')
    assert "needs attention" in await attention.inner_text()
    assert await attention.locator('button[data-action="cancel"]').count() == 0
    await page.screenshot(path=str(shots / "inbox.png"), full_page=True)
    await row.locator('button[data-action="resolve"]').click()
    await page.fill("#action-reason", "refunded by hand, ticket 811")
    await page.click("#action-dry")
    await page.wait_for_selector("#action-confirm:not([disabled])")
    await page.click("#action-confirm")
    assert await reaches(coordinator, "order-stuck-0", SagaStatus.COMPENSATED)
    await page.wait_for_selector('#inbox-table tr[data-saga="order-stuck-0"]', state="detached")

    # Bulk: pick sagas, dry run lists each one's outcome, then confirm.
    await page.goto(server.url + "/#/sagas?status=stuck")
    await page.wait_for_selector('#saga-rows tr[data-saga="order-stuck-1"]')
    await page.check('#saga-rows input.pick[value="order-stuck-1"]')
    assert await page.inner_text("#bulk-count") == "1 selected"
    await page.check("#pick-all-matching")
    assert "every saga matching" in await page.inner_text("#bulk-count")
    await page.click('button[data-bulk="resolve"]')
    await page.fill("#bulk-reason", "refunds done by the bank")
    await page.click("#bulk-dry")
    await page.wait_for_selector('#bulk-outcomes tr[data-outcome="ok"]')
    assert await page.locator('#bulk-outcomes tr[data-outcome="ok"]').count() == 2
    assert (await log.get("order-stuck-1")).status is SagaStatus.STUCK  # type: ignore[union-attr]
    await page.click("#bulk-confirm")
    await page.wait_for_selector("#bulk-preview strong >> text=Done")
    for saga_id in ("order-stuck-1", "order-stuck-2"):
        assert await reaches(coordinator, saga_id, SagaStatus.COMPENSATED)
    await page.click("#bulk-cancel")
    await page.goto(server.url + "/#/sagas?status=compensated")
    await page.wait_for_selector('#saga-rows tr[data-saga="order-stuck-2"] .by-hand')
    assert await page.locator("#saga-rows .by-hand").count() == 3
    assert await page.locator('#saga-rows tr[data-saga="order-undone"] .by-hand').count() == 0
    await page.wait_for_selector('#nav-stuck[data-count="0"]')


async def test_switch_token_and_sign_out(page: Any, server: HttpServer) -> None:
    await page.goto(server.url + "/#/sagas")
    await page.wait_for_selector("#who >> text=ana (operator)")
    await page.click("#switch-token")
    await page.fill("#token", "viewer-secret-1")
    await page.click("#token-form button")
    await page.wait_for_selector("#who >> text=vera (viewer)")
    assert await page.evaluate("localStorage.getItem('sagaToken')") == "viewer-secret-1"
    await page.wait_for_selector("#bulk-bar")
    assert await page.is_disabled('button[data-bulk="retry"]')
    await page.click("#sign-out")
    await page.wait_for_selector("#token-form:not([hidden])")
    assert await page.evaluate("localStorage.getItem('sagaToken')") is None
    assert await page.inner_text("#who") == "signed out"
    await page.fill("#token", "operator-secret-1")
    await page.click("#token-form button")
    await page.wait_for_selector("#who >> text=ana (operator)")
