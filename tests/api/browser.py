"""Browser fixtures for the dashboard tests, offered to every test in tests/api by its
conftest (a module's own fixture of the same name wins): ``server`` serves the dashboard
over the module's ``coordinator``; ``page`` is headless Chromium logged in as the operator,
offline but for that server, and fails the test on a page error or a console error;
``shots`` is where screenshots go (``SAGA_SCREENSHOTS``, else the test's temp dir)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from saga import Coordinator
from saga.api import ApiConfig, HttpServer, start_http
from tests.api.conftest import TOKENS
from tests.api.test_dashboard import ARGS, CHROMIUM, SCREENSHOTS_ENV, _need_chromium


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def server(coordinator: Coordinator) -> AsyncIterator[HttpServer]:
    server = await start_http(
        coordinator, host="127.0.0.1", port=0, config=ApiConfig(tokens=TOKENS)
    )
    yield server
    await server.close()


@pytest.fixture
async def page(server: HttpServer) -> AsyncIterator[Any]:
    _need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_init_script("localStorage.setItem('sagaToken', 'operator-secret-1')")
        page = await context.new_page()
        await page.route(lambda url: not url.startswith(server.url), lambda route: route.abort())
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        yield page
        assert errors == []
        await browser.close()
