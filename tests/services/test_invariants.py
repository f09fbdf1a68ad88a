"""Business invariants under failure: many order sagas, real services, a SIGKILLed coordinator.

The four example services run as subprocesses (two replicas of payments, inventory and
shipping, sharing queue groups) over a real nats-server, each with its own database; shipping
fails transiently 30% of the time. Random customers, credit and stock make some orders
complete and others compensate. The coordinator is a ``saga coordinator`` subprocess: it is
SIGKILLed while sagas are in flight, more sagas are written to the log, and a new coordinator
recovers them all. Then the services' own tables must show a consistent business.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from examples.order_saga import ORDER_SAGA
from saga import SagaStatus, SqlSagaLog
from saga.coordinator import saga_start
from saga.dev import Child, Children, service_argv
from saga.log.base import SagaQuery
from saga.transport.nats_server import NatsServer
from tests.services.conftest import Databases
from tests.services.world import World, check_invariants, random_world, seed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
REPLICAS = {"orders": 1, "payments": 2, "inventory": 2, "shipping": 2}
SAGAS = {"sqlite": 200, "postgres": 200}
SETTLE_S = 90.0
FINAL = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)


async def start_coordinator(children: Children, name: str, nats_url: str, log_url: str) -> Child:
    argv = [sys.executable, "-m", "saga", "coordinator", "--nats", nats_url, "--db", log_url]
    child = await children.start(name, [*argv, "--sagas", "examples.order_saga:ORDER_SAGA"])
    await children.wait_ready(child, marker="coordinator running")
    return child


async def write_sagas(log: SqlSagaLog, world: World, batch: range) -> None:
    for i in batch:
        order = world.orders[i]
        now_ms = time.time_ns() // 1_000_000
        await log.create(saga_start(ORDER_SAGA, order, order["order_id"], now_ms))


async def count_final(log: SqlSagaLog) -> int:
    page = await log.find(SagaQuery(statuses=list(FINAL), limit=1000))
    return len(page.sagas)


async def wait_until(log: SqlSagaLog, final: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        done = await count_final(log)
        if done >= final:
            return done
        assert time.monotonic() < deadline, f"only {done} of {final} sagas settled in {seconds} s"
        await asyncio.sleep(0.05)


async def test_order_sagas_keep_business_invariants_through_a_coordinator_crash(
    nats_server: NatsServer, databases: Databases, tmp_path: Path
) -> None:
    seed_value = int(os.environ.get("SAGA_TEST_SEED", random.randrange(1 << 30)))
    print(f"world seed {seed_value} (SAGA_TEST_SEED reproduces it)")
    backend = "postgres" if databases.log.startswith("postgresql") else "sqlite"
    n = SAGAS[backend]
    world = random_world(random.Random(seed_value), n)
    await seed(world, databases.services)

    children = Children(log_dir=tmp_path / "logs", cwd=REPO)
    log = SqlSagaLog(databases.log)
    await log.open()
    try:
        replicas = []
        for service, count in REPLICAS.items():
            for replica in range(count):
                argv = service_argv(
                    service, nats_server.url, databases.services[service],
                    replica=replica, seed=False, flaky=0.3,
                )  # fmt: skip
                replicas.append(await children.start(f"{service}-{replica}", argv))
        await asyncio.gather(*(children.wait_ready(c) for c in replicas))

        first_half = range(n // 2)
        await write_sagas(log, world, first_half)
        first = await start_coordinator(children, "coordinator-1", nats_server.url, databases.log)
        done_at_kill = await wait_until(log, len(first_half) // 5, SETTLE_S)
        children.kill(first)
        assert await first.process.wait() == -signal.SIGKILL
        unfinished = len(await log.unfinished())
        # Killed in the middle: some sagas were still in flight.
        assert unfinished > 0, f"all {done_at_kill} sagas had settled before the kill"

        await write_sagas(log, world, range(n // 2, n))
        await start_coordinator(children, "coordinator-2", nats_server.url, databases.log)
        await wait_until(log, n, SETTLE_S)
        records = [await log.get(o["order_id"]) for o in world.orders]
    finally:
        await children.stop()
        await log.close()

    statuses = {r.saga_id: r.status for r in records if r is not None}
    assert len(statuses) == n
    assert set(statuses.values()) <= set(FINAL)
    completed = {k for k, s in statuses.items() if s is SagaStatus.COMPLETED}
    # A realistic mix: both ends happen.
    assert 0 < len(completed) < n, statuses
    await check_invariants(world, completed, databases.services)
    outcomes = Counter(s.value for s in statuses.values())
    print(f"{n} sagas, {unfinished} unfinished at the kill: {dict(outcomes)}")
