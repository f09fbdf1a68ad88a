"""Load is not failure: a burst of sagas against a slow, one-at-a-time participant over a real
NATS and a real SQLite log completes without a single timeout or compensation.

Scaled down from the issue's 2,000 sagas x 10 ms against the default 10 s step timeout: the
ratio that matters is (commands queued for one service x time per command) / step timeout,
and it is kept at 3 here (600 sagas x 10 ms = 6 s against a 2 s timeout), so without flow
control the burst times out (the last test proves it), and with it nothing does. The default
retry policy is kept; the timeout is scaled so the file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from saga import Coordinator, NatsTransport, Participant, Saga, SagaStatus, SqlSagaLog, Step
from saga.coordinator import SagaChange
from saga.events import EventType
from saga.participant import CommandContext, InMemoryIdempotencyStore
from saga.transport.nats_server import NatsServer

pytestmark = pytest.mark.timeout(240)

STEP_TIMEOUT = timedelta(seconds=2)
COMMAND_SECONDS = 0.010
BURST = 600  # x 10 ms = 6 s queued at one service: 3 step timeouts
SERVICES = ("orders", "payments", "inventory")

SAGA = Saga(
    name="flow",
    steps=tuple(
        Step(
            name=service,
            service=service,
            command="do",
            compensation="undo",
            timeout=STEP_TIMEOUT,
        )
        for service in SERVICES
    ),
)


class SlowServices:
    """Each service handles one command at a time per replica, sleeping ``seconds`` in it;
    after ``slow_after`` commands of a service, ``slow_seconds`` instead."""

    def __init__(
        self,
        *,
        replicas: int = 1,
        seconds: float = COMMAND_SECONDS,
        slow_after: int | None = None,
        slow_seconds: float = COMMAND_SECONDS,
    ) -> None:
        self.handled: Counter[str] = Counter()
        self._seconds = seconds
        self._slow_after = slow_after
        self._slow_seconds = slow_seconds
        self.participants: list[Participant] = []
        for service in SERVICES:
            store = InMemoryIdempotencyStore()  # shared by the replicas, like a database
            for replica in range(replicas):
                participant = Participant(
                    service, store=store, max_concurrency=1, instance=f"{service}-{replica}"
                )
                participant.command("do")(self._handler(service))
                participant.command("undo")(self._handler(service))
                self.participants.append(participant)
        self._servers: list[Any] = []

    def _handler(self, service: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            self.handled[service] += 1
            slow = self._slow_after is not None and self.handled[service] > self._slow_after
            await asyncio.sleep(self._slow_seconds if slow else self._seconds)
            return {}

        return handle

    async def serve(self, url: str) -> None:
        self._servers = [await p.serve(url) for p in self.participants]

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()
        self._servers = []


class Tally:
    """A coordinator listener: timeouts and compensations as they are recorded."""

    def __init__(self) -> None:
        self.timeouts = 0
        self.compensations = 0
        self.first_timeout = asyncio.Event()

    def __call__(self, change: SagaChange) -> None:
        for event in change.events:
            if event.type is EventType.STEP_FAILED and event.data["error"]["code"] == "timeout":
                self.timeouts += 1
                self.first_timeout.set()
            elif event.type is EventType.COMPENSATION_STARTED:
                self.compensations += 1


async def _burst(
    nats_server: NatsServer, sqlite_url: str, services: SlowServices, burst: int = BURST
) -> tuple[Tally, list[SagaStatus]]:
    await services.serve(nats_server.url)
    tally = Tally()
    try:
        coord = Coordinator(SqlSagaLog(sqlite_url), NatsTransport(nats_server.url), sagas=[SAGA])
        async with coord:
            coord.add_listener(tally)
            handles = await asyncio.gather(*(coord.start(SAGA, {"i": i}) for i in range(burst)))
            results = await asyncio.wait_for(
                asyncio.gather(*(handle.result() for handle in handles)), 180
            )
            loads = coord.service_load()
    finally:
        await services.stop()
    assert [load.service for load in loads] == sorted(SERVICES)
    # Every slot was given back: nothing leaks, nothing is left waiting.
    assert [(load.queued, load.in_flight) for load in loads] == [(0, 0)] * len(SERVICES)
    return tally, [result.status for result in results]


async def test_a_burst_against_a_one_at_a_time_service_completes_without_timeouts(
    nats_server: NatsServer, sqlite_url: str
) -> None:
    tally, statuses = await _burst(nats_server, sqlite_url, SlowServices())
    assert tally.timeouts == 0
    assert tally.compensations == 0
    assert statuses == [SagaStatus.COMPLETED] * BURST


async def test_a_burst_against_ten_replicas_completes_without_timeouts(
    nats_server: NatsServer, sqlite_url: str
) -> None:
    tally, statuses = await _burst(nats_server, sqlite_url, SlowServices(replicas=10))
    assert tally.timeouts == 0
    assert tally.compensations == 0
    assert statuses == [SagaStatus.COMPLETED] * BURST


async def test_a_service_that_slows_down_halfway_causes_no_timeouts(
    nats_server: NatsServer, sqlite_url: str
) -> None:
    """10 ms a command, then 40 ms: the limit that was fine becomes too deep a queue at the
    participant (64 x 40 ms > a quarter of the timeout) and the adaptive limit shrinks."""
    burst = 400
    services = SlowServices(slow_after=burst - 100, slow_seconds=4 * COMMAND_SECONDS)
    tally, statuses = await _burst(nats_server, sqlite_url, services, burst)
    assert tally.timeouts == 0
    assert tally.compensations == 0
    assert statuses == [SagaStatus.COMPLETED] * burst


async def test_the_same_burst_without_flow_control_times_out(
    nats_server: NatsServer, sqlite_url: str
) -> None:
    """The scenario is real: unbounded, the queue at the participant eats the timeouts."""
    services = SlowServices()
    await services.serve(nats_server.url)
    tally = Tally()
    try:
        coord = Coordinator(
            SqlSagaLog(sqlite_url),
            NatsTransport(nats_server.url),
            sagas=[SAGA],
            max_in_flight_per_service=None,
        )
        async with coord:
            coord.add_listener(tally)
            await asyncio.gather(*(coord.start(SAGA, {"i": i}) for i in range(BURST)))
            await asyncio.wait_for(tally.first_timeout.wait(), 60)
    finally:
        await services.stop()
    assert tally.timeouts > 0
