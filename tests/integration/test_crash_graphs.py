"""A coordinator SIGKILLed mid-branches or mid-event delivery, on SQLite and PostgreSQL.

The saga's three steps run as parallel branches (``BRANCHES``); the coordinator subprocess is
killed with commands of several branches out, or mid-way through compensations that run side
by side, then restarted. Each effect happens once, and the end is the one the log dictates.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid

import pytest

from saga import SagaStatus, SqlSagaLog, send_event
from saga.coordinator import saga_start
from saga.errors import TransportError
from saga.events import EventType
from saga.transport.nats_server import NatsServer
from tests.integration.crash_sagas import APPROVAL, BRANCHES
from tests.integration.services import CountingServices
from tests.integration.test_crash import REPO, check_log, stop, wait_final

pytestmark = pytest.mark.slow


async def spawn(
    nats_url: str, db_url: str, failpoint: str | None = None
) -> asyncio.subprocess.Process:
    if failpoint:
        command = ["-m", "tests.integration.crash_sagas", "--failpoint", failpoint]
    else:
        command = ["-m", "saga", "coordinator", "--sagas", "tests.integration.crash_sagas:SAGAS"]
    return await asyncio.create_subprocess_exec(
        sys.executable, *command, "--nats", nats_url, "--db", db_url,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def at_step(log: SqlSagaLog, saga_id: str, step: str) -> None:
    async with asyncio.timeout(30):
        while True:
            record = await log.get(saga_id)
            if record is not None and record.current_step == step:
                return
            await asyncio.sleep(0.05)


CASES = [
    # Killed once the third branch's command is out: all three are in flight at once.
    ("after_send@stock/forward", set(), set(), SagaStatus.COMPLETED),
    # One branch's outcome recorded while another (payments, held) is still in flight.
    ("after_record@create/forward", set(), {"payments"}, SagaStatus.COMPLETED),
    # inventory says no: create and credit are compensated side by side (they do not depend
    # on each other); killed once the first compensation is out.
    ("after_send@credit/compensate", {"inventory"}, set(), SagaStatus.COMPENSATED),
]


@pytest.mark.parametrize(("failpoint", "reject", "hold", "expected"), CASES)
async def test_sigkill_with_branches_in_flight_then_restart(
    nats_server: NatsServer,
    sql_url: str,
    failpoint: str,
    reject: set[str],
    hold: set[str],
    expected: SagaStatus,
) -> None:
    services = CountingServices(reject=reject, hold=hold)
    await services.serve(nats_server.url)
    log = SqlSagaLog(sql_url)
    await log.open()
    try:
        saga_id = f"branches-{uuid.uuid4().hex[:8]}"
        await log.create(saga_start(BRANCHES, {}, saga_id, time.time_ns() // 1_000_000))
        first = await spawn(nats_server.url, sql_url, failpoint)
        code = await asyncio.wait_for(first.wait(), 30)
        assert code == -signal.SIGKILL, f"coordinator did not hit {failpoint}: exit {code}"
        mid = await log.get(saga_id)
        assert mid is not None
        assert not mid.status.is_final
        services.release.set()  # the held branch answers now, to nobody: its reply is lost
        second = await spawn(nats_server.url, sql_url)
        try:
            status = await wait_final(log, saga_id)
        finally:
            await stop(second)
        steps = await check_log(log, saga_id)
    finally:
        await log.close()
        await services.stop()

    assert status is expected, steps
    assert all(n == 1 for n in services.runs.values()), services.runs
    sent = [s for t, s, d in steps if t == EventType.STEP_SENT and d == "forward"]
    first_outcome = next(
        i for i, (t, _, _) in enumerate(steps) if t in ("step_succeeded", "step_rejected")
    )
    # The three branches were recorded as sent before any outcome: they ran in parallel.
    assert {s for t, s, d in steps[:first_outcome] if t == EventType.STEP_SENT} == {
        "create",
        "credit",
        "stock",
    }
    assert sorted(set(sent)) == ["create", "credit", "stock"]
    if expected is SagaStatus.COMPLETED:
        assert {(s, d) for s, d in services.order} == {
            ("orders", "forward"),
            ("payments", "forward"),
            ("inventory", "forward"),
        }
    else:
        undone = {s for t, s, d in steps if t == EventType.STEP_SUCCEEDED and d == "compensate"}
        assert undone == {"create", "credit"}
        assert ("inventory", "compensate") not in services.order  # rejected: nothing to undo


async def test_sigkill_while_an_outside_event_is_delivered_then_the_sender_retries(
    nats_server: NatsServer, sql_url: str
) -> None:
    """The coordinator dies after recording the event and before answering its sender: the
    sender hears nothing, retries with the same id once a coordinator is back, learns it was
    taken, and the saga goes on with the event's payload, which is in its log once."""
    services = CountingServices()
    await services.serve(nats_server.url)
    log = SqlSagaLog(sql_url)
    await log.open()
    try:
        saga_id = f"approval-{uuid.uuid4().hex[:8]}"
        await log.create(saga_start(APPROVAL, {}, saga_id, time.time_ns() // 1_000_000))
        first = await spawn(nats_server.url, sql_url, "after_record@approved")
        await at_step(log, saga_id, "approval")
        with pytest.raises((TransportError, TimeoutError)):
            await send_event(nats_server.url, saga_id, "approved", event_id="mail-7",
                             payload={"by": "ana"}, timeout_s=3)  # fmt: skip
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        second = await spawn(nats_server.url, sql_url)
        try:
            async with asyncio.timeout(30):
                while True:
                    try:
                        again = await send_event(nats_server.url, saga_id, "approved",
                                                 event_id="mail-7", payload={"by": "ana"},
                                                 timeout_s=3)  # fmt: skip
                        break
                    except TransportError:  # the new coordinator is not serving yet
                        await asyncio.sleep(0.2)
            status = await wait_final(log, saga_id)
        finally:
            await stop(second)
        events = await log.events(saga_id)
        steps = await check_log(log, saga_id)
    finally:
        await log.close()
        await services.stop()
    assert again.recorded is False  # the first delivery was recorded before the crash
    assert status is SagaStatus.COMPLETED, steps
    assert sum(1 for e in events if e.type is EventType.SIGNAL_RECEIVED) == 1
    assert services.runs[("inventory", "forward", saga_id)] == 1
    assert all(n == 1 for n in services.runs.values()), services.runs
