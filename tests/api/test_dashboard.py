"""The dashboard in a real headless Chromium: list, live updates, timeline, dry run, resolve."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from saga import Coordinator, SagaStatus
from saga.api import HttpServer
from saga.log.base import SagaLog
from tests.api.conftest import settled
from tests.coordinator.shop import Shop

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS_ENV = "SAGA_SCREENSHOTS"
"""Set to a folder to keep the screenshots (they go to the test's temp dir otherwise)."""


def _need_chromium() -> None:
    """Fail in CI (CI=true), skip with a reason elsewhere, when the browser is missing."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the dashboard test must run in CI: {missing}")
    pytest.skip(f"dashboard browser test: {missing}")


# shots and server: tests/api/browser.py (through the conftest); this page, unlike that
# one, fails only on page errors, not on console errors.
@pytest.fixture
async def page(server: HttpServer) -> AsyncIterator[Any]:
    _need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        # Log in as the operator, as a user would by pasting a token once.
        await context.add_init_script("localStorage.setItem('sagaToken', 'operator-secret-1')")
        page = await context.new_page()
        # Offline: the page must need nothing but this server.
        await page.route(lambda url: not url.startswith(server.url), lambda route: route.abort())
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        assert errors == []
        await browser.close()


async def test_dashboard_shows_a_compensated_saga_and_resolves_a_stuck_one(
    page: Any, server: HttpServer, coordinator: Coordinator, shop: Shop, shots: Path
) -> None:
    shop.reject.add("inventory.reserve")
    compensated = await coordinator.start("order", {"sku": "A"}, saga_id="order-compensated")
    assert await settled(coordinator, compensated.saga_id) is SagaStatus.COMPENSATED

    # The list, with live updates: a saga started after the page loaded appears by itself.
    await page.goto(server.url + "/#/sagas")
    await page.wait_for_selector('tr[data-saga="order-compensated"]')
    assert (await page.inner_text("#live")) == "live"
    shop.fail["payments.release"] = 100
    stuck = await coordinator.start("order", {"sku": "B"}, saga_id="order-stuck")
    assert await settled(coordinator, stuck.saga_id) is SagaStatus.STUCK
    row = page.locator('tr[data-saga="order-stuck"]')
    await row.wait_for()
    assert "stuck" in await row.inner_text()

    # One compensated saga's timeline, as a picture.
    await page.goto(server.url + "/#/saga/order-compensated")
    await page.wait_for_selector("svg g.step")
    forward = await page.eval_on_selector_all(
        "g.step.forward", "gs => gs.map(g => [g.dataset.step, g.dataset.state])"
    )
    back = await page.eval_on_selector_all(
        "g.step.compensation", "gs => gs.map(g => [g.dataset.step, g.dataset.state])"
    )
    assert forward == [["create", "succeeded"], ["credit", "succeeded"], ["stock", "rejected"]]
    assert back == [["credit", "succeeded"], ["create", "succeeded"]]
    assert "compensated" in await page.inner_text(".facts")
    shot = shots / "compensated-saga.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # The compensations view shows the stuck one, with its failing step and error.
    await page.goto(server.url + "/#/compensations")
    stuck_row = page.locator('#compensation-table tr[data-saga="order-stuck"]')
    await stuck_row.wait_for()
    text = await stuck_row.inner_text()
    assert "stuck" in text
    assert "credit (compensate)" in text
    assert "payments.release is down" in text

    # Resolve it: a reason, a dry run that shows what follows, then confirm.
    await page.goto(server.url + "/#/saga/order-stuck")
    await page.click('button[data-action="resolve"]')
    await page.click("#action-dry")
    assert "A reason is required" in await page.inner_text("#action-error")
    await page.fill("#action-reason", "refunded by hand, ticket 42")
    await page.click("#action-dry")
    await page.wait_for_selector("#preview-compensations li")
    assert await page.inner_text("#preview-compensations") == "create"
    assert (await coordinator.get("order-stuck")).status is SagaStatus.STUCK
    await page.screenshot(path=str(shots / "dry-run.png"))
    await page.click("#action-confirm")
    audit = page.locator("#audit tbody tr", has_text="refunded by hand")
    await audit.wait_for()
    assert "ana" in await audit.inner_text()
    assert await settled(coordinator, "order-stuck") is SagaStatus.COMPENSATED
    await page.wait_for_selector(
        'g.step.compensation[data-step="credit"][data-state="done_by_hand"]'
    )
    await page.screenshot(path=str(shots / "resolved-saga.png"), full_page=True)


async def test_dashboard_asks_for_a_token_and_disables_actions_for_viewers(
    server: HttpServer, coordinator: Coordinator, shop: Shop
) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright

    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 100
    await coordinator.start("order", {}, saga_id="needs-help")
    await settled(coordinator, "needs-help")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page()
        await page.goto(server.url + "/#/saga/needs-help")
        await page.wait_for_selector("#token-form:not([hidden])")
        await page.fill("#token", "viewer-secret-1")
        await page.click("#token-form button")
        await page.wait_for_selector('button[data-action="resolve"]')
        assert await page.is_disabled('button[data-action="resolve"]')
        assert "vera (viewer)" in await page.inner_text("#who")
        await browser.close()


async def test_dashboard_shows_flow_control_per_service(
    page: Any, server: HttpServer, coordinator: Coordinator
) -> None:
    done = await coordinator.start("order", {"sku": "A"}, saga_id="order-flow")
    assert await settled(coordinator, done.saga_id) is SagaStatus.COMPLETED
    await page.goto(server.url + "/#/services")
    row = page.locator('#service-table tr[data-service="payments"]')
    await row.wait_for()
    assert (await row.inner_text()).split() == ["payments", "0", "0", "16"]
    assert await page.locator("#service-table tbody tr").count() == 3


async def test_dashboard_shows_coordinators_and_saga_owners_safely(
    page: Any, server: HttpServer, coordinator: Coordinator, log: SagaLog, shots: Path
) -> None:
    # Other coordinators on the same log write their own name and address into it: the
    # dashboard must show them as text, and link only a plain web address.
    ownership = log.ownership
    evil = '<img src=x onerror="window.pwned=1">'
    await ownership.join("evil-1", evil, 60_000, "javascript:window.pwned=2")
    await ownership.join("web-1", "web", 60_000, "https://web.example:8443/")
    await ownership.join("gone-1", "gone", 60_000)
    await ownership.leave("gone-1")
    done = await coordinator.start("order", {"sku": "A"}, saga_id="order-owned")
    assert await settled(coordinator, done.saga_id) is SagaStatus.COMPLETED

    await page.goto(server.url + "/#/coordinators")
    await page.wait_for_selector("#coordinator-table tbody tr[data-coordinator]")
    assert await page.locator("#coordinator-table tbody tr").count() == 4
    me = page.locator(f'tr[data-coordinator="{coordinator.coordinator_id}"]')
    cells = await me.locator("td").all_inner_texts()
    assert cells[0] == f"{coordinator.name} (this one)"
    assert cells[1:3] == [coordinator.coordinator_id, "live"]
    assert cells[3].endswith("s left")
    assert cells[7] == "—"
    web = await page.locator('tr[data-coordinator="web-1"] td').all_inner_texts()
    assert web[:3] == ["web", "web-1", "live"]
    link = page.locator('tr[data-coordinator="web-1"] a')
    assert await link.get_attribute("href") == "https://web.example:8443/"
    assert await link.get_attribute("rel") == "noopener noreferrer"
    gone = await page.locator('tr[data-coordinator="gone-1"] td').all_inner_texts()
    assert gone[2] == "stopped"
    assert gone[3].startswith("stopped ")
    bad = page.locator('tr[data-coordinator="evil-1"]')
    assert (await bad.locator("td").all_inner_texts())[0] == evil
    assert (await bad.locator("td").all_inner_texts())[7] == "javascript:window.pwned=2"
    assert await bad.locator("a, img").count() == 0
    assert await page.locator("#main img").count() == 0
    assert await page.evaluate("window.pwned") is None
    assert await page.locator('nav a[data-nav="coordinators"].active').count() == 1
    await page.screenshot(path=str(shots / "coordinators.png"), full_page=True)

    # The owner in the saga list and in the saga's facts.
    await page.goto(server.url + "/#/sagas")
    row = page.locator('tr[data-saga="order-owned"]')
    await row.wait_for()
    assert coordinator.coordinator_id in await row.locator("td.owner").inner_text()
    await page.goto(server.url + "/#/saga/order-owned")
    await page.wait_for_selector(".facts")
    facts = await page.inner_text(".facts")
    assert f"{coordinator.coordinator_id} (epoch 1)" in facts
    await page.goto(server.url + "/#/sagas")
    await row.wait_for()
    await page.screenshot(path=str(shots / "saga-list-owners.png"))
