"""Crash tests: a coordinator subprocess on a SQLite file is SIGKILLed mid-saga and restarted.

The saga is written to the log by the test (as any process may start one) and the
coordinator picks it up at start. Participants run in the test process over a real NATS and
count every handler run, so "each effect happened once" is checked where it happens.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from pathlib import Path

import pytest

from saga import SagaStatus, SqlSagaLog
from saga.coordinator import saga_start
from saga.engine import replay
from saga.events import EventType
from saga.transport.nats_server import NatsServer
from tests.integration.crash_sagas import ORDER
from tests.integration.services import CountingServices

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


async def spawn_coordinator(
    nats_url: str, db_url: str, failpoint: str | None = None
) -> asyncio.subprocess.Process:
    """``saga coordinator`` as deployed; with a failpoint, the crash entry point, which gives
    its coordinator a hook that SIGKILLs it there (the library reads no failpoint itself)."""
    if failpoint:
        command = ["-m", "tests.integration.crash_sagas", "--failpoint", failpoint]
    else:
        command = ["-m", "saga", "coordinator", "--sagas", "tests.integration.crash_sagas:ORDER"]
    return await asyncio.create_subprocess_exec(
        sys.executable, *command, "--nats", nats_url, "--db", db_url,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def wait_final(log: SqlSagaLog, saga_id: str, seconds: float = 30) -> SagaStatus:
    async with asyncio.timeout(seconds):
        while True:
            record = await log.get(saga_id)
            if record is not None and record.status in (
                SagaStatus.COMPLETED,
                SagaStatus.COMPENSATED,
                SagaStatus.STUCK,
            ):
                return record.status
            await asyncio.sleep(0.05)


async def create_saga(log: SqlSagaLog) -> str:
    saga_id = f"crash-{uuid.uuid4().hex[:8]}"
    import time

    await log.create(saga_start(ORDER, {"amount": 10}, saga_id, time.time_ns() // 1_000_000))
    return saga_id


async def check_log(log: SqlSagaLog, saga_id: str) -> list[tuple[str, str, str]]:
    """The log has no gap and replays; returns (type, step, direction) for each step event."""
    events = await log.events(saga_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    replay(events)
    return [(e.type.value, e.data.get("step", ""), e.data.get("direction", "")) for e in events]


CASES = [
    # (failpoint, services that reject, expected end)
    ("on_reply@credit/forward", set(), SagaStatus.COMPLETED),  # reply arrived, not recorded
    ("after_record@credit/forward", set(), SagaStatus.COMPLETED),  # recorded, next not sent
    ("after_send@stock/forward", set(), SagaStatus.COMPLETED),  # sent, reply lost with us
    ("after_record@credit/compensate", {"inventory"}, SagaStatus.COMPENSATED),  # mid-compensation
]


@pytest.mark.parametrize(("failpoint", "reject", "expected"), CASES)
async def test_sigkill_at_a_step_boundary_then_restart(
    nats_server: NatsServer,
    tmp_path: Path,
    failpoint: str,
    reject: set[str],
    expected: SagaStatus,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'saga.db'}"
    services = CountingServices(reject=reject)
    await services.serve(nats_server.url)
    log = SqlSagaLog(db_url)
    await log.open()
    try:
        saga_id = await create_saga(log)
        first = await spawn_coordinator(nats_server.url, db_url, failpoint)
        code = await asyncio.wait_for(first.wait(), 30)
        assert code == -signal.SIGKILL, f"coordinator did not hit {failpoint}: exit {code}"
        mid = await log.get(saga_id)
        assert mid is not None
        assert not mid.status.is_final

        second = await spawn_coordinator(nats_server.url, db_url)
        try:
            status = await wait_final(log, saga_id)
        finally:
            await stop(second)
        steps = await check_log(log, saga_id)
    finally:
        await log.close()
        await services.stop()

    assert status is expected, steps
    # Every participant effect happened exactly once, whatever was re-sent.
    assert services.runs, "no participant ran"
    assert all(n == 1 for n in services.runs.values()), services.runs
    if expected is SagaStatus.COMPLETED:
        assert [(s, d) for s, d in services.order] == [
            ("orders", "forward"),
            ("payments", "forward"),
            ("inventory", "forward"),
        ]
    else:
        assert services.order[-2:] == [("payments", "compensate"), ("orders", "compensate")]
        undone = [s for t, s, d in steps if t == EventType.STEP_SUCCEEDED and d == "compensate"]
        assert undone == ["credit", "create"]


async def test_sigkill_from_outside_while_a_participant_works(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Killed while the stock reservation is being handled; its reply goes nowhere."""
    db_url = f"sqlite:///{tmp_path / 'saga.db'}"
    services = CountingServices(hold={"inventory"})
    await services.serve(nats_server.url)
    log = SqlSagaLog(db_url)
    await log.open()
    try:
        saga_id = await create_saga(log)
        first = await spawn_coordinator(nats_server.url, db_url)
        await asyncio.wait_for(services.entered.wait(), 30)
        first.kill()
        await first.wait()
        services.release.set()  # the participant finishes; its reply has no listener
        await asyncio.sleep(0.2)
        assert services.runs[("inventory", "forward", saga_id)] == 1

        second = await spawn_coordinator(nats_server.url, db_url)
        try:
            status = await wait_final(log, saga_id)
        finally:
            await stop(second)
        steps = await check_log(log, saga_id)
    finally:
        await log.close()
        await services.stop()
    assert status is SagaStatus.COMPLETED
    # The stock command was re-sent with the same key and answered from the record.
    sent = [s for t, s, d in steps if t == EventType.STEP_SENT and s == "stock"]
    assert len(sent) >= 1
    assert all(n == 1 for n in services.runs.values()), services.runs
