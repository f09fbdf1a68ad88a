"""In a real headless Chromium: a page on another origin can neither start nor act on a saga.

The API runs without tokens (the ``saga dev`` default), so only the browser protections stand
between a page the user happens to visit and the coordinator: the Origin / Sec-Fetch-Site
check, the JSON-only bodies and the Host allow-list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from saga import Coordinator, Participant, Saga, SagaStatus, Step
from saga.api import HttpServer, start_http
from saga.participant import CommandContext
from saga.testing import InMemorySagaLog, InMemoryTransport
from tests.api.conftest import reaches, settled
from tests.api.test_dashboard import ARGS, CHROMIUM, _need_chromium
from tests.coordinator.shop import Shop, order_saga

REBOUND = "attacker.example"
"""A name the browser resolves to 127.0.0.1, as DNS rebinding would make it."""

HELD = "held-1"
STUCK = "stuck-1"


def hold_saga(release: asyncio.Event) -> tuple[Saga, Participant]:
    """One step whose command waits for ``release``: its saga stays running, so cancellable."""
    slow = Participant("slow")

    @slow.command("wait")
    async def wait(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}

    @slow.command("undo")
    async def undo(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        return {}

    step = Step(
        name="hold", service="slow", command="wait", compensation="undo",
        timeout=timedelta(minutes=5),
    )  # fmt: skip
    return Saga(name="hold", steps=(step,)), slow


@pytest.fixture
async def coordinator() -> AsyncIterator[Coordinator]:
    shop = Shop()
    shop.reject.add("inventory.reserve")
    shop.fail["payments.release"] = 10**6
    release = asyncio.Event()
    hold, slow = hold_saga(release)
    transport = InMemoryTransport([*shop.participants, slow])
    coordinator = Coordinator(InMemorySagaLog(), transport, sagas=[order_saga(), hold])
    async with coordinator:
        await coordinator.start("order", {}, saga_id=STUCK)
        assert await settled(coordinator, STUCK) is SagaStatus.STUCK
        await coordinator.start("hold", {}, saga_id=HELD)
        assert await reaches(coordinator, HELD, SagaStatus.RUNNING)
        yield coordinator
        # Let the held saga finish before closing: closing the coordinator while its reply
        # arrives hung once in twenty runs (an in-flight command at close; see the report).
        release.set()
        await settled(coordinator, HELD)


@pytest.fixture
async def api(coordinator: Coordinator) -> AsyncIterator[HttpServer]:
    server = await start_http(coordinator, host="127.0.0.1", port=0)  # no tokens: saga dev
    yield server
    await server.close()


@pytest.fixture
async def attacker() -> AsyncIterator[str]:
    """Another origin on loopback (another port): serves a blank page to run scripts in."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>cats</title><body>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    _need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        args = [*ARGS, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield browser
        await browser.close()


FETCH = """async ({url, body, mode}) => {
  try {
    const init = {method: "POST", body, mode, headers: {"Content-Type": "text/plain"}};
    const response = await fetch(url, init);
    return response.type === "opaque" ? "opaque" : String(response.status);
  } catch (error) {
    return "blocked: " + error;
  }
}"""
"""A cross-origin POST without preflight: text/plain is a CORS-safelisted type."""

FORM = """({url, name, value}) => new Promise((resolve) => {
  const frame = document.createElement("iframe");
  frame.name = "sink-" + Math.random();
  document.body.append(frame);
  const form = document.createElement("form");
  Object.assign(form, {method: "POST", action: url, enctype: "text/plain", target: frame.name});
  const input = Object.assign(document.createElement("input"), {name, value});
  form.append(input);
  document.body.append(form);
  frame.addEventListener("load", () => resolve("loaded"));
  form.submit();
})"""
"""A plain HTML form whose text/plain body is JSON: name ``{"a":"`` + ``=`` + value ``"}``."""


async def refusals(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The API's refusal log lines, once there are ``count`` (bounded wait)."""
    for _ in range(500):
        lines = [r.getMessage() for r in caplog.records if r.name == "saga.api.guard"]
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} refusals, logged: {lines}")


async def test_a_page_on_another_origin_can_neither_start_nor_act_on_a_saga(
    browser: Any,
    api: HttpServer,
    attacker: str,
    coordinator: Coordinator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="saga.api.guard")
    log = coordinator.log
    stuck_before = await log.events(STUCK)
    held_before = await log.events(HELD)
    page = await browser.new_page()
    await page.goto(attacker + "/")

    start = f"{api.url}/api/sagas/order"
    answers = [
        await page.evaluate(FETCH, {"url": start, "body": '{"saga_id": "evil-cors"}'}),
        await page.evaluate(
            FETCH, {"url": start, "body": '{"saga_id": "evil-no-cors"}', "mode": "no-cors"}
        ),
        await page.evaluate(
            FORM,
            {"url": start, "name": '{"saga_id": "evil-form", "input": {"a": "', "value": '"}}'},
        ),
        await page.evaluate(
            FETCH,
            {"url": f"{api.url}/api/sagas/{STUCK}/actions/retry", "body": '{"reason": "evil"}'},
        ),
        await page.evaluate(
            FETCH,
            {
                "url": f"{api.url}/api/sagas/{HELD}/actions/cancel",
                "body": '{"reason": "evil"}',
                "mode": "no-cors",
            },
        ),
        await page.evaluate(
            FORM,
            {
                "url": f"{api.url}/api/sagas/{HELD}/actions/cancel",
                "name": '{"reason": "',
                "value": 'evil"}',
            },
        ),
    ]
    # The browser sent each one (no CORS headers come back, so fetch reads nothing) ...
    assert answers[0].startswith("blocked")
    assert answers[1] == "opaque"
    # ... and the API refused each one: 403, the page's origin is not the API's.
    lines = await refusals(caplog, 6)
    assert len([line for line in lines if ": 403 " in line and "another origin" in line]) == 6
    for path in ("/api/sagas/order", f"/api/sagas/{STUCK}/actions/retry"):
        assert any(f"POST '{path}'" in line for line in lines), path
    assert sum(f"POST '/api/sagas/{HELD}/actions/cancel'" in line for line in lines) == 2

    # Nothing was created or changed: the same two sagas, with the same histories.
    assert {s.saga_id for s in (await log.find()).sagas} == {STUCK, HELD}
    assert await log.events(STUCK) == stuck_before
    assert await log.events(HELD) == held_before
    assert (await coordinator.get(HELD)).status is SagaStatus.RUNNING


async def test_a_rebound_host_name_is_not_served_but_the_api_s_own_page_still_writes(
    browser: Any, api: HttpServer, coordinator: Coordinator
) -> None:
    page = await browser.new_page()
    # DNS rebinding: attacker.example now resolves to the API, so its page is same-origin.
    rebound = await page.goto(f"http://{REBOUND}:{api.port}/api/sagas")
    assert rebound is not None
    assert rebound.status == 421
    assert "does not answer to the host name" in await rebound.text()
    status = await page.evaluate(
        """async () => (await fetch("/api/sagas/order", {method: "POST",
             headers: {"Content-Type": "application/json"},
             body: JSON.stringify({saga_id: "evil-rebound"})})).status"""
    )
    assert status == 421

    # The dashboard's own origin: a JSON POST from its page still starts a saga.
    await page.goto(api.url + "/")
    status = await page.evaluate(
        """async () => (await fetch("/api/sagas/order", {method: "POST",
             headers: {"Content-Type": "application/json"},
             body: JSON.stringify({saga_id: "mine"})})).status"""
    )
    assert status == 201
    assert {s.saga_id for s in (await coordinator.log.find()).sagas} == {STUCK, HELD, "mine"}
    assert await settled(coordinator, "mine") is SagaStatus.STUCK  # nothing in flight at close
