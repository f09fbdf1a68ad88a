"""Metrics: every metric the README lists is served; saga_in_flight by saga name and health;
a build-info gauge; no _created series; per-service commands in flight and queued."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

import saga
from saga import Coordinator
from saga.api import ApiConfig, create_app
from saga.protocol import Direction
from saga.testing import Fault, InMemorySagaLog, InMemoryTransport
from saga.version import __version__
from tests.api.test_ops import metric
from tests.coordinator.shop import Shop, order_saga

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_metrics() -> set[str]:
    """The metric names README's **Metrics** paragraph promises."""
    text = README.read_text()
    start = text.index("**Metrics**")
    paragraph = text[start : text.index("\n\n", start)]
    return set(re.findall(r"`(saga_[a-z_]+)", paragraph))


async def scrape_while_held() -> tuple[str, str]:
    """/metrics with one order saga held at its credit step (its reply lost), and the id."""
    shop = Shop()
    transport = InMemoryTransport(
        shop.participants,
        intercept=lambda c: (
            Fault.LOSE_REPLY
            if (c.step, c.direction) == ("credit", Direction.FORWARD)
            else Fault.DELIVER
        ),
    )
    saga = order_saga()
    async with Coordinator(InMemorySagaLog(), transport, sagas=[saga]) as coord:
        server = TestServer(create_app(coord, ApiConfig()))
        async with TestClient(server) as client:
            handle = await coord.start(saga, {})
            for _ in range(1000):  # until the credit command is out (bounded: ~10 s)
                if any(c.step == "credit" for c in transport.sent):
                    break
                await asyncio.sleep(0.01)
            response = await client.get("/metrics")
            assert response.status == 200
            return await response.text(), handle.saga_id


async def test_every_metric_the_readme_lists_is_served() -> None:
    text, _ = await scrape_while_held()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    promised = readme_metrics()
    assert {"saga_in_flight", "saga_build_info", "saga_service_in_flight"} <= promised
    missing = set()
    for name in promised:
        base = name.removesuffix("_total")
        if base not in families and name not in families:
            missing.add(name)
    assert missing == set()


async def test_in_flight_by_saga_name_build_info_and_no_created_series() -> None:
    text, _ = await scrape_while_held()
    assert metric(text, "saga_in_flight", saga="order", health="progressing") == 1
    assert metric(text, "saga_in_flight", saga="order", health="stuck") == 0
    assert metric(text, "saga_build_info", version=__version__) == 1
    assert __version__ != "0+unknown"  # the installed package's version
    assert saga.__version__ == __version__
    assert not [line for line in text.splitlines() if "_created" in line]


async def test_per_service_commands_in_flight() -> None:
    text, _ = await scrape_while_held()
    assert metric(text, "saga_service_in_flight", service="payments") == 1
    assert metric(text, "saga_service_queue_depth", service="payments") == 0
    assert metric(text, "saga_service_in_flight", service="orders") == 0
