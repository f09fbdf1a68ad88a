"""Long-running steps over a real nats-server, SQLite and PostgreSQL: accepted, then completed
by the participant later, announced on saga.completions; a coordinator SIGKILLed while the step
is accepted finds the completion made while it was down."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest

from saga import Coordinator, NatsTransport, SagaStatus, SqlSagaLog
from saga.coordinator import saga_start
from saga.errors import CompletionRefused
from saga.events import EventType
from saga.transport.nats_server import NatsServer
from tests.integration.crash_sagas import LONG
from tests.integration.services import CountingServices
from tests.integration.test_crash import check_log, stop, wait_final
from tests.integration.test_crash_graphs import at_step, spawn

pytestmark = pytest.mark.slow


async def accepted(log: SqlSagaLog, saga_id: str) -> None:
    async with asyncio.timeout(30):
        while True:
            if any(e.type is EventType.STEP_ACCEPTED for e in await log.events(saga_id)):
                return
            await asyncio.sleep(0.05)


async def test_a_completion_is_announced_and_applied_at_once(
    nats_server: NatsServer, sql_url: str
) -> None:
    """The step is polled hourly: only the announcement can bring its outcome this soon."""
    services = CountingServices(accept={"payments"})
    await services.serve(nats_server.url)
    try:
        async with Coordinator(SqlSagaLog(sql_url), NatsTransport(nats_server.url),
                               sagas=[LONG]) as coordinator:  # fmt: skip
            handle = await coordinator.start(LONG, {"amount": 5})
            await asyncio.wait_for(services.accepted.wait(), 30)
            await accepted(coordinator.log, handle.saga_id)
            record = await coordinator.log.get(handle.saga_id)
            assert record is not None
            assert record.status is SagaStatus.RUNNING
            assert record.current_step == "credit"
            token = services.tokens[handle.saga_id]
            payments = services.participant("payments")
            assert await payments.heartbeat(token) == 1
            await payments.complete(token, {"charged": 5})
            await payments.complete(token, {"charged": 5})  # a repeat: nothing new
            result = await asyncio.wait_for(handle.result(), 30)
            events = await coordinator.log.events(handle.saga_id)
    finally:
        await services.stop()
    assert result.status is SagaStatus.COMPLETED
    assert result.results["credit"] == {"charged": 5}
    succeeded = [e for e in events if e.type is EventType.STEP_SUCCEEDED]
    assert [e.data["step"] for e in succeeded] == ["create", "credit", "stock"]
    assert all(n == 1 for n in services.runs.values()), services.runs


async def test_a_rejected_completion_compensates_and_a_late_one_is_refused(
    nats_server: NatsServer, sql_url: str
) -> None:
    services = CountingServices(accept={"payments"})
    await services.serve(nats_server.url)
    try:
        async with Coordinator(SqlSagaLog(sql_url), NatsTransport(nats_server.url),
                               sagas=[LONG]) as coordinator:  # fmt: skip
            handle = await coordinator.start(LONG, {})
            await asyncio.wait_for(services.accepted.wait(), 30)
            await accepted(coordinator.log, handle.saga_id)
            token = services.tokens[handle.saga_id]
            payments = services.participant("payments")
            await payments.reject(token, "card_declined", "the card was declined")
            result = await asyncio.wait_for(handle.result(), 30)
            with pytest.raises(CompletionRefused):
                await payments.complete(token, {"charged": 5})  # another outcome: refused
    finally:
        await services.stop()
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated == ["create"]  # credit said no: nothing of it to undo


async def test_sigkill_while_a_step_is_accepted_then_completed_while_no_coordinator_runs(
    nats_server: NatsServer, sql_url: str
) -> None:
    services = CountingServices(accept={"payments"})
    await services.serve(nats_server.url)
    log = SqlSagaLog(sql_url)
    await log.open()
    try:
        saga_id = f"long-{uuid.uuid4().hex[:8]}"
        await log.create(saga_start(LONG, {}, saga_id, time.time_ns() // 1_000_000))
        first = await spawn(nats_server.url, sql_url, "after_record@credit/forward")
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        await at_step(log, saga_id, "credit")
        await accepted(log, saga_id)
        # The job finishes while every coordinator is down: the announcement reaches nobody.
        await services.participant("payments").complete(services.tokens[saga_id], {"ok": 1})
        second = await spawn(nats_server.url, sql_url)
        try:
            status = await wait_final(log, saga_id)
        finally:
            await stop(second)
        steps = await check_log(log, saga_id)
        events = await log.events(saga_id)
    finally:
        await log.close()
        await services.stop()
    assert status is SagaStatus.COMPLETED, steps
    credit = [e for e in events if e.data.get("step") == "credit"]
    assert [e.type for e in credit] == [
        EventType.STEP_SENT,
        EventType.STEP_ACCEPTED,
        EventType.STEP_SUCCEEDED,
    ]
    assert credit[-1].data["result"] == {"ok": 1}
    assert all(n == 1 for n in services.runs.values()), services.runs
