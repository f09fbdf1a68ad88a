"""End to end: real nats-server, real participants over nats.micro, SQLite and PostgreSQL logs."""

from __future__ import annotations

import asyncio

import pytest

from saga import Coordinator, NatsTransport, SagaStatus, SqlSagaLog
from saga.events import EventType
from saga.log.base import SagaQuery
from saga.transport.nats_server import NatsServer
from tests.integration.crash_sagas import ORDER
from tests.integration.services import CountingServices

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


async def test_sagas_complete_and_compensate_over_nats(
    nats_server: NatsServer, db_url: str
) -> None:
    services = CountingServices()
    await services.serve(nats_server.url)
    try:
        log = SqlSagaLog(db_url)
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER]) as coord:
            ok = await asyncio.wait_for(coord.execute(ORDER, {"n": 1}), 30)
            services.reject.add("inventory")
            bad = await asyncio.wait_for(coord.execute(ORDER, {"n": 2}), 30)
            bad_events = await log.events(bad.saga_id)
            record = await log.get(bad.saga_id)
    finally:
        await services.stop()
    assert ok.status is SagaStatus.COMPLETED
    assert bad.status is SagaStatus.COMPENSATED
    assert bad.compensated == ["credit", "create"]
    assert record is not None
    assert record.status is SagaStatus.COMPENSATED
    undo = [
        e.data["step"]
        for e in bad_events
        if e.type is EventType.STEP_SENT and e.data["direction"] == "compensate"
    ]
    assert undo == ["credit", "create"]
    assert services.order[-2:] == [("payments", "compensate"), ("orders", "compensate")]
    assert all(n == 1 for n in services.runs.values())


async def test_many_concurrent_sagas_over_nats(nats_server: NatsServer, db_url: str) -> None:
    services = CountingServices()
    await services.serve(nats_server.url)
    try:
        log = SqlSagaLog(db_url)
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER]) as coord:
            results = await asyncio.wait_for(
                asyncio.gather(*(coord.execute(ORDER, {"i": i}) for i in range(60))), 60
            )
            page = await log.find(SagaQuery(statuses=[SagaStatus.COMPLETED], limit=1000))
    finally:
        await services.stop()
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 60
    assert len(page.sagas) == 60
    assert len(services.runs) == 180
    assert all(n == 1 for n in services.runs.values())


async def test_no_responder_retries_then_stuck_then_resumed_by_operator(
    nats_server: NatsServer, db_url: str
) -> None:
    services = CountingServices()
    inventory = services.participants[2]
    services.participants = services.participants[:2]  # nobody serves inventory yet
    await services.serve(nats_server.url)
    try:
        log = SqlSagaLog(db_url)
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[ORDER]) as coord:
            stuck = await asyncio.wait_for(coord.execute(ORDER, {}), 30)
            events = await log.events(stuck.saga_id)
            # The operator brings inventory up and resumes the saga.
            async with inventory.serving(nats_server.url):
                await coord.resume(stuck.saga_id, "inventory deployed")
                final = await asyncio.wait_for(coord.wait(stuck.saga_id), 30)
    finally:
        await services.stop()
    failures = [e for e in events if e.type is EventType.STEP_FAILED]
    forward = [e for e in failures if e.data["direction"] == "forward"]
    assert len(forward) == 5  # FAST allows five attempts
    assert {e.data["error"]["code"] for e in failures} == {"no_responders"}
    # Stock's outcome stayed unknown, so it must be compensated first; its service is absent,
    # so the saga is stuck (visibly), not half done and silent.
    assert stuck.status is SagaStatus.STUCK
    assert stuck.stuck is not None
    assert stuck.stuck["code"] == "compensation_failed"
    assert stuck.stuck["step"] == "stock"
    assert final.status is SagaStatus.COMPENSATED
    assert final.compensated == ["stock", "credit", "create"]
    # Inventory never ran the forward command, so its compensation was fenced, not run.
    assert ("inventory", "compensate") not in services.order
    assert services.order[-2:] == [("payments", "compensate"), ("orders", "compensate")]
