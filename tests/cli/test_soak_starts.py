"""``saga soak`` starts each saga with tenacity: resent while the coordinator is down or
answers 5xx (at the next coordinator, when there are several), counted, never resent after a
4xx, and given up (not looped forever) at last."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from saga import soak
from saga.soak import Feed, SoakError
from saga.transport.nats_server import free_port

ORDER = {"order_id": "soak-t-00001", "customer": "ann", "items": []}


@pytest.fixture
async def answers() -> AsyncIterator[tuple[list[int], str]]:
    """A start endpoint that answers with the statuses in the list, one per request."""
    statuses: list[int] = []

    async def start(request: web.Request) -> web.Response:
        status = statuses.pop(0)
        return web.json_response({"saga_id": (await request.json())["saga_id"]}, status=status)

    app = web.Application()
    app.router.add_post("/api/sagas/order", start)
    async with TestServer(app, host="127.0.0.1") as server:
        yield statuses, str(server.make_url("/api/sagas/order"))


def feed(*urls: str) -> Feed:
    return Feed(urls=list(urls), log=None, window=10)  # type: ignore[arg-type]  # not read


async def test_a_start_is_resent_after_5xx_and_counted(answers: tuple[list[int], str]) -> None:
    statuses, url = answers
    statuses += [503, 502, 200]
    starts = feed(url)
    async with ClientSession() as session:
        await starts._start(session, ORDER)
    assert statuses == []
    assert starts.started == [ORDER["order_id"]]
    assert starts.retried == 2
    assert starts.existing == 1  # 200: the saga existed, created by a lost earlier try


async def test_a_4xx_is_an_error_at_once(answers: tuple[list[int], str]) -> None:
    statuses, url = answers
    statuses += [422, 201]
    starts = feed(url)
    async with ClientSession() as session:
        with pytest.raises(SoakError, match="answered 422"):
            await starts._start(session, ORDER)
    assert statuses == [201]
    assert starts.retried == 0


async def test_an_unreachable_coordinator_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(soak, "START_RETRY_FOR_S", 1.0)
    starts = feed(f"http://127.0.0.1:{free_port()}/api/sagas/order")
    async with ClientSession() as session:
        with pytest.raises(SoakError, match="could not start saga soak-t-00001 in 1 s"):
            await starts._start(session, ORDER)
    assert starts.retried >= 1
    assert starts.started == []


async def test_starts_go_round_robin_and_a_retry_moves_to_the_next_coordinator() -> None:
    """Three start endpoints; the second answers 503 once: order 1's retry goes to the third."""
    hits: list[tuple[int, str]] = []
    failing = {1}

    def endpoint(number: int) -> web.Application:
        async def start(request: web.Request) -> web.Response:
            saga_id = (await request.json())["saga_id"]
            hits.append((number, saga_id))
            status = 503 if number in failing else 201
            failing.discard(number)
            return web.json_response({"saga_id": saga_id}, status=status)

        app = web.Application()
        app.router.add_post("/api/sagas/order", start)
        return app

    servers = [TestServer(endpoint(n), host="127.0.0.1") for n in range(3)]
    for server in servers:
        await server.start_server()
    try:
        starts = feed(*(str(s.make_url("/api/sagas/order")) for s in servers))
        async with ClientSession() as session:
            for index in range(4):
                await starts._start(session, {**ORDER, "order_id": f"o{index}"}, index)
    finally:
        for server in servers:
            await server.close()
    assert hits == [(0, "o0"), (1, "o1"), (2, "o1"), (2, "o2"), (0, "o3")]
    assert starts.started == ["o0", "o1", "o2", "o3"]
    assert starts.retried == 1
