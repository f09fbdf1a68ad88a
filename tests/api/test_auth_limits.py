"""Failed authentication: each refusal is logged (never the token), repeated ones get 429;
the opt-in access log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator
from saga.api import ApiConfig, create_app, start_http
from saga.api.config import AuthLimit
from saga.api.limits import FailureWindow
from saga.testing import FakeClock, InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS, VIEWER
from tests.api.test_api import error_of
from tests.coordinator.shop import Shop, order_saga

Client = TestClient[Any, Any]
GUESS = "guess-secret-123"
WRONG = {"Authorization": f"Bearer {GUESS}"}
SECRETS = (GUESS, "viewer-secret-1", "operator-secret-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def limited(clock: FakeClock) -> AsyncIterator[Client]:
    """Tokens on, and 3 wrong tokens a minute allowed, on a clock the test moves."""
    coordinator = Coordinator(
        InMemorySagaLog(), InMemoryTransport(Shop().participants), sagas=[order_saga()],
        clock=clock,
    )  # fmt: skip
    config = ApiConfig(tokens=TOKENS, auth_limit=AuthLimit(failures=3, window=timedelta(minutes=1)))
    async with coordinator, TestClient(TestServer(create_app(coordinator, config))) as client:
        yield client


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused ")]


async def test_each_refused_request_is_logged_with_the_client_and_never_the_token(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await error_of(await client.get("/api/sagas?status=running", headers=WRONG), 401)
    await error_of(await client.get("/api/me"), 401)
    await error_of(await client.post("/api/sagas/order", json={}, headers=VIEWER), 403)
    assert (await client.get("/api/sagas", headers=OPERATOR)).status == 200
    wrong, missing, role = refused_lines(caplog)
    assert wrong.startswith("refused GET '/api/sagas' from 127.0.0.1: 401 ")
    assert "the bearer token is not valid" in wrong
    assert "failure 1 of 10" in wrong
    assert missing.startswith("refused GET '/api/me' from 127.0.0.1: 401 ")
    assert role.startswith("refused POST '/api/sagas/order' from 127.0.0.1: 403 ")
    assert "'vera'" in role  # who tried: the token's name
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_repeated_wrong_tokens_from_one_client_get_429_until_they_age_out(
    limited: Client, clock: FakeClock
) -> None:
    for _ in range(3):
        await error_of(await limited.get("/api/sagas", headers=WRONG), 401)
    blocked = await limited.get("/api/sagas", headers=WRONG)
    assert "too many failed authentications" in await error_of(blocked, 429)
    assert blocked.headers["Retry-After"] == "60"
    assert (await blocked.json())["error"]["code"] == "too_many_requests"
    # While blocked, even the right token is not tried: a guesser learns nothing more.
    await error_of(await limited.get("/api/sagas", headers=OPERATOR), 429)
    assert (await limited.get("/healthz")).status == 200  # public routes are not limited
    await clock.advance(timedelta(seconds=45))
    assert (await limited.get("/api/me", headers=OPERATOR)).headers["Retry-After"] == "15"
    await clock.advance(timedelta(seconds=15))
    assert (await limited.get("/api/me", headers=OPERATOR)).status == 200
    await error_of(await limited.get("/api/sagas", headers=WRONG), 401)


async def test_requests_without_a_token_are_not_counted_as_failures(limited: Client) -> None:
    for _ in range(10):
        await error_of(await limited.get("/api/sagas"), 401)
    assert (await limited.get("/api/sagas", headers=VIEWER)).status == 200


async def test_a_429_is_logged_too(limited: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(4):
        await limited.get("/api/sagas", headers=WRONG)
    last = refused_lines(caplog)[-1]
    assert last.startswith("refused GET '/api/sagas' from 127.0.0.1: 429 ")
    assert GUESS not in caplog.text


def test_the_failure_window_is_per_client_and_bounded() -> None:
    clock = FakeClock()
    window = FailureWindow(AuthLimit(failures=2), clock, max_clients=3)
    assert window.fail("a") == 1
    assert window.retry_after_s("a") is None
    assert window.fail("a") == 2
    assert window.retry_after_s("a") == 60
    assert window.retry_after_s("b") is None  # another address is not blocked
    for client in ("b", "c", "d"):
        window.fail(client)
    assert window.retry_after_s("a") is None  # the oldest client was forgotten: memory bounded
    assert window.fail("d") == 2


@pytest.mark.parametrize("bad", [{"failures": 0}, {"window": timedelta(0)}])
def test_auth_limit_is_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="AuthLimit"):
        AuthLimit(**bad)


# -- the access log ----------------------------------------------------------------------------


async def access_lines(coordinator: Coordinator, config: ApiConfig, caplog: Any) -> list[str]:
    caplog.set_level(logging.INFO, logger="saga.api.access")
    server = await start_http(coordinator, port=0, config=config)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{server.url}/api/sagas?limit=5"
            async with session.get(url, headers=OPERATOR) as response:
                assert response.status == 200
            async with session.get(f"{server.url}/api/me", headers=WRONG) as response:
                assert response.status == 401
    finally:
        await server.close()
    return [r.getMessage() for r in caplog.records if r.name == "saga.api.access"]


async def test_the_access_log_is_off_by_default(
    coordinator: Coordinator, caplog: pytest.LogCaptureFixture
) -> None:
    assert await access_lines(coordinator, ApiConfig(tokens=TOKENS), caplog) == []


async def test_the_access_log_logs_every_request_without_tokens(
    coordinator: Coordinator, caplog: pytest.LogCaptureFixture
) -> None:
    lines = await access_lines(coordinator, ApiConfig(tokens=TOKENS, access_log=True), caplog)
    assert len(lines) == 2
    ok, refused = lines
    assert ok.startswith("127.0.0.1 ")
    assert '"GET /api/sagas?limit=5 HTTP/1.1" 200 ' in ok
    assert '"GET /api/me HTTP/1.1" 401 ' in refused
    for secret in SECRETS:
        assert secret not in caplog.text
