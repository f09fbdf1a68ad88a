"""NATS cluster failover: a node dies mid-run and nothing that matters is lost.

Three routed nats-server nodes from the wheel; a real Coordinator (SQLite log) and two replicas
of each participant, every client given all three URLs. The node the coordinator is connected
to (and one replica of each service with it) is SIGKILLed while 200 sagas run. Commands and
replies lost with it come back through the step timeout's retry, with the same idempotency
key, so every saga still ends as designed and every effect is applied exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from saga import (
    Coordinator,
    NatsTransport,
    Participant,
    Rejected,
    RetryPolicy,
    Saga,
    SagaStatus,
    SqlSagaLog,
    Step,
)
from saga.coordinator import SagaChange
from saga.events import EventType
from saga.participant import CommandContext, InMemoryIdempotencyStore
from saga.participant.nats import ParticipantServer
from saga.transport.nats_cluster import NatsCluster

pytestmark = [pytest.mark.nats, pytest.mark.timeout(300)]

SAGAS = 200
REJECT_EVERY = 10
"""Every tenth saga is refused by inventory and must end compensated."""
SERVICES = ("orders", "payments", "inventory")
REPLICAS = 2
HANDLER_SECONDS = 0.05
"""With two commands at a time per replica, a few seconds of work: the kill lands mid-run."""
KILL_AFTER_EFFECTS = SAGAS
"""Kill the node once this many forward effects (of about 3 x SAGAS) are applied."""
OVERALL_TIMEOUT_S = 120.0

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    max_interval=timedelta(seconds=1),
    max_attempts=None,
)
SAGA = Saga(
    name="cluster_failover",
    steps=tuple(
        Step(
            name=service,
            service=service,
            command="do",
            compensation="undo",
            retry=RETRY,
            compensation_retry=RETRY,
            timeout=timedelta(seconds=2),
        )
        for service in SERVICES
    ),
)


class Effects:
    """Each service's effects per saga: ``done`` counts forward effects, ``undone`` the
    compensations that undid one. A replica pair shares one idempotency store."""

    def __init__(self) -> None:
        self.done: Counter[tuple[str, str]] = Counter()
        self.undone: Counter[tuple[str, str]] = Counter()
        self.undo_runs: Counter[tuple[str, str]] = Counter()
        self.progress = asyncio.Event()
        self.participants: list[Participant] = []
        for service in SERVICES:
            store = InMemoryIdempotencyStore()
            for replica in range(REPLICAS):
                participant = Participant(
                    service, store=store, max_concurrency=2, instance=f"{service}-{replica}"
                )
                participant.command("do")(self._do(service))
                participant.command("undo")(self._undo(service))
                self.participants.append(participant)

    def _do(self, service: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(HANDLER_SECONDS)
            if service == "inventory" and request["reject"]:
                raise Rejected("out of stock", code="out_of_stock")
            self.done[(service, ctx.saga_id)] += 1
            if sum(self.done.values()) >= KILL_AFTER_EFFECTS:
                self.progress.set()
            return {"service": service}

        return handle

    def _undo(self, service: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(HANDLER_SECONDS)
            self.undo_runs[(service, ctx.saga_id)] += 1
            # Inventory's refused forward left nothing to undo: that is a success too.
            if self.done[(service, ctx.saga_id)] > self.undone[(service, ctx.saga_id)]:
                self.undone[(service, ctx.saga_id)] += 1
            return {}

        return handle


@pytest.fixture
async def cluster() -> AsyncIterator[NatsCluster]:
    async with NatsCluster(3, name="failover") as running:
        yield running


async def _replicas_answering(url: str, service: str) -> int:
    """How many replicas of ``service`` answer a micro PING sent through node ``url``."""
    nc = await nats.connect(url, max_reconnect_attempts=1)
    try:
        ids: set[str] = set()

        async def collect(msg: Msg) -> None:
            ids.add(json.loads(msg.data)["id"])

        sub = await nc.subscribe(nc.new_inbox(), cb=collect)
        await nc.publish(f"$SRV.PING.{service}", b"", reply=sub.subject)
        await asyncio.sleep(0.5)
        await sub.unsubscribe()
        return len(ids)
    finally:
        await nc.close()


async def _every_replica_answers(url: str) -> bool:
    counts = [await _replicas_answering(url, service) for service in SERVICES]
    return counts == [REPLICAS] * len(SERVICES)


class TimeoutTally:
    """A coordinator listener counting attempts that timed out (commands or replies lost
    with the node, for the failure messages: how many depends on timing)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, change: SagaChange) -> None:
        for event in change.events:
            if event.type is EventType.STEP_FAILED and event.data["error"]["code"] == "timeout":
                self.count += 1


async def _until(
    predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0
) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await predicate():  # noqa: ASYNC110 - polling the cluster: no event
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"not within {timeout_s:.0f} s: {what}")


async def test_sagas_survive_the_death_of_the_coordinators_nats_node(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    effects = Effects()
    transport = NatsTransport(cluster.urls)
    coord = Coordinator(
        SqlSagaLog(f"sqlite+aiosqlite:///{tmp_path / 'saga.db'}"), transport, sagas=[SAGA]
    )
    timeouts = TimeoutTally()
    servers: list[ParticipantServer] = []
    try:
        async with coord:
            coord.add_listener(timeouts)
            url = transport.connected_url
            assert url is not None
            doomed = cluster.index_of(url)
            # Replica 0 of each service sits on the doomed node, replica 1 on the next one.
            for n, participant in enumerate(effects.participants):
                first = (doomed + n % REPLICAS) % len(cluster.urls)
                # One comma-separated string, as SAGA_NATS_URL gives it; tried in this order.
                urls = ",".join(cluster.urls[first:] + cluster.urls[:first])
                server = await participant.serve(urls, connect_options={"dont_randomize": True})
                servers.append(server)
            await _until(
                lambda: _every_replica_answers(url),
                "every replica answers through the coordinator's node",
            )

            inputs = [{"i": i, "reject": i % REJECT_EVERY == 0} for i in range(SAGAS)]
            handles = await asyncio.gather(*(coord.start(SAGA, data) for data in inputs))
            ending = [asyncio.ensure_future(handle.result()) for handle in handles]
            await asyncio.wait_for(effects.progress.wait(), OVERALL_TIMEOUT_S)
            cluster.kill(doomed)
            finished_before = sum(future.done() for future in ending)

            results = await asyncio.wait_for(asyncio.gather(*ending), OVERALL_TIMEOUT_S)
            now = transport.connected_url
            assert now is not None
            assert cluster.index_of(now) != doomed, "the coordinator failed over to another node"
            assert transport.reconnects == 1
            # The replicas that lost their node serve again from a surviving one.
            await _until(
                lambda: _every_replica_answers(now),
                "every replica answers after the failover",
            )
    finally:
        for server in servers:
            await server.stop()

    assert finished_before < SAGAS // 2, "the node must die mid-run, not after the work"
    statuses = Counter(result.status for result in results)
    rejected = SAGAS // REJECT_EVERY
    assert statuses == {
        SagaStatus.COMPLETED: SAGAS - rejected,
        SagaStatus.COMPENSATED: rejected,
    }, f"{timeouts.count} attempts timed out"
    for data, result in zip(inputs, results, strict=True):
        saga_id = result.saga_id
        done = [effects.done[(s, saga_id)] for s in SERVICES]
        undone = [effects.undone[(s, saga_id)] for s in SERVICES]
        if data["reject"]:
            assert (done, undone) == ([1, 1, 0], [1, 1, 0]), saga_id
            assert result.compensated == ["payments", "orders"]
        else:
            assert (done, undone) == ([1, 1, 1], [0, 0, 0]), saga_id
    # Each compensation handler ran once per saga at most (a repeat was answered from the
    # record), and nothing ran for a saga this run did not start.
    assert set(effects.undo_runs.values()) <= {1}
    started = {result.saga_id for result in results}
    assert {saga_id for _, saga_id in effects.done} <= started
