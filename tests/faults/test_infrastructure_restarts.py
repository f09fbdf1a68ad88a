"""The broker and the database restart in the middle of a run; nothing is lost or doubled."""

from __future__ import annotations

import asyncio

import pytest

from saga import Coordinator, NatsTransport, SagaStatus, SqlSagaLog
from saga.events import EventType
from saga.log.base import SagaQuery
from saga.transport.nats_server import NatsServer
from tests.faults.conftest import PrivatePostgres
from tests.integration.crash_sagas import ORDER
from tests.integration.services import CountingServices

pytestmark = pytest.mark.slow

SAGAS = 60


async def check_logs(log: SqlSagaLog, saga_ids: list[str]) -> None:
    for saga_id in saga_ids:
        events = await log.events(saga_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-1].type is EventType.SAGA_COMPLETED


async def test_nats_server_restart_mid_run(nats_server: NatsServer, sqlite_url: str) -> None:
    services = CountingServices()
    await services.serve(nats_server.url)
    log = SqlSagaLog(sqlite_url)
    try:
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER]) as coord:
            handles = [await coord.start(ORDER, {"i": i}) for i in range(SAGAS)]
            await asyncio.sleep(0.05)
            await nats_server.restart()  # same port: clients reconnect by themselves
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 90)
            await check_logs(log, [h.saga_id for h in handles])
    finally:
        await services.stop()
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * SAGAS
    assert len(services.runs) == 3 * SAGAS
    assert all(n == 1 for n in services.runs.values()), "an effect happened twice"


async def test_postgres_restart_mid_run(
    nats_server: NatsServer, private_postgres: PrivatePostgres
) -> None:
    services = CountingServices()
    await services.serve(nats_server.url)
    log = SqlSagaLog(private_postgres.url)
    try:
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER]) as coord:
            handles = [await coord.start(ORDER, {"i": i}) for i in range(SAGAS)]
            await asyncio.to_thread(private_postgres.stop, "immediate")  # a crash, no goodbye
            await asyncio.sleep(2)  # the coordinator keeps deciding nothing it cannot record
            await asyncio.to_thread(private_postgres.start)
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)
            await check_logs(log, [h.saga_id for h in handles])
    finally:
        await services.stop()
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * SAGAS
    assert len(services.runs) == 3 * SAGAS
    assert all(n == 1 for n in services.runs.values()), "an effect happened twice"


async def test_reads_and_writes_right_after_a_quiet_postgres_restart(
    nats_server: NatsServer, private_postgres: PrivatePostgres
) -> None:
    # Nothing touches the log while the server is down, so every pooled connection is stale
    # when it comes back: the first read must not be the one that finds out.
    services = CountingServices()
    await services.serve(nats_server.url)
    log = SqlSagaLog(private_postgres.url)
    try:
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER]) as coord:
            done = await coord.execute(ORDER, {"i": 0})
            assert done.status is SagaStatus.COMPLETED
            await asyncio.to_thread(private_postgres.stop, "fast")
            await asyncio.to_thread(private_postgres.start)
            assert (await coord.get(done.saga_id)).status is SagaStatus.COMPLETED
            page = await log.find(SagaQuery(limit=10))
            assert [r.saga_id for r in page.sagas] == [done.saga_id]
            again = await asyncio.wait_for(coord.execute(ORDER, {"i": 1}), 60)
            assert again.status is SagaStatus.COMPLETED
    finally:
        await services.stop()
