"""Group commit never acknowledges what is not durable: a coordinator SIGKILLed while a batch of
many sagas' writes is being committed has acted on nothing the log does not hold.

The coordinator runs as a subprocess starting sagas under load and kills itself at a random
moment of a group commit (``group_commit_crash``). The participants run here and record every
command they receive. After each kill the test reads the log and checks:

- every saga whose start returned (the subprocess printed ``started <id>``) is in the log;
- every command a participant received was recorded (its ``step_sent``, same attempt) first;
- every saga's events are contiguous and its row agrees with them: no half-written batch.

Then a coordinator runs without kills until every saga has ended, each step's effect once.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from saga import Participant, SagaStatus, SqlSagaLog
from saga.engine import replay
from saga.events import EventType
from saga.participant import CommandContext
from saga.transport.nats_server import NatsServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAGAS = 400
KILLS = 4


class Recorder:
    """orders, payments, inventory: every command received, and every effect applied."""

    def __init__(self) -> None:
        self.received: set[tuple[str, str, str, int]] = set()
        self.effects: Counter[tuple[str, str, str]] = Counter()
        self.participants = [Participant(n) for n in ("orders", "payments", "inventory")]
        for participant in self.participants:
            participant.command("do")(self._handler(participant.name))
            participant.command("undo")(self._handler(participant.name))
        self._servers: list[Any] = []

    def _handler(self, service: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            self.received.add((ctx.saga_id, ctx.step, ctx.direction.value, ctx.attempt))
            self.effects[(ctx.saga_id, ctx.step, ctx.direction.value)] += 1
            return {"service": service}

        return handle

    async def serve(self, url: str) -> None:
        self._servers = [await p.serve(url) for p in self.participants]

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()


async def run_coordinator(nats_url: str, db_url: str, kill_after: int) -> tuple[int, set[str]]:
    """Run the subprocess to its end; its exit code and the saga ids it said were started."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.group_commit_crash",
        "--nats", nats_url, "--db", db_url, "--sagas", str(SAGAS), "--prefix", "gc",
        "--kill-after-commits", str(kill_after),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    started: set[str] = set()
    try:
        async with asyncio.timeout(120):
            async for line in process.stdout:
                word, _, saga_id = line.decode().strip().partition(" ")
                if word == "started":
                    started.add(saga_id)
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, started


async def check_log(log: SqlSagaLog, started: set[str], recorder: Recorder) -> None:
    records = {r.saga_id: r for r in await log.unfinished()}
    events = await log.events_many(sorted(started | {k[0] for k in recorder.received}))
    missing = sorted(s for s in started if not events[s])
    assert not missing, f"acknowledged starts missing from the log: {missing[:5]}"
    sent = {
        (saga_id, e.data["step"], e.data["direction"], e.data["attempt"])
        for saga_id, saga_events in events.items()
        for e in saga_events
        if e.type is EventType.STEP_SENT
    }
    unrecorded = sorted(recorder.received - sent)
    assert not unrecorded, f"commands received but never recorded: {unrecorded[:5]}"
    for saga_id, saga_events in events.items():
        seqs = [e.seq for e in saga_events]
        assert seqs == list(range(1, len(seqs) + 1)), f"{saga_id}: events {seqs}"
        record = records.get(saga_id) or await log.get(saga_id)
        assert record is not None
        assert record.last_seq == len(seqs), f"{saga_id}: row at {record.last_seq}, {len(seqs)}"
        assert record.status is replay(saga_events).status


async def test_a_coordinator_killed_mid_group_commit_acted_only_on_what_is_logged(
    nats_server: NatsServer, sql_url: str
) -> None:
    db_url = sql_url
    recorder = Recorder()
    await recorder.serve(nats_server.url)
    log = SqlSagaLog(db_url)
    await log.open()
    acknowledged: set[str] = set()
    try:
        for kill in range(KILLS):
            code, started = await run_coordinator(nats_server.url, db_url, 3 + 4 * kill)
            assert code == -9, f"run {kill} was not killed (exit {code}); raise the load"
            acknowledged |= started
            await check_log(log, acknowledged, recorder)
        assert acknowledged, "no start was acknowledged before the kills"
        assert recorder.received, "no command was received before the kills"

        code, started = await run_coordinator(nats_server.url, db_url, 0)
        assert code == 0
        assert len(started) == SAGAS
        await check_log(log, started, recorder)
        statuses = {r.status for r in (await log.unfinished())}
        assert not statuses, f"sagas left unfinished: {statuses}"
        for n in range(SAGAS):
            record = await log.get(f"gc-{n}")
            assert record is not None
            assert record.status is SagaStatus.COMPLETED
        # Every step's effect once per saga, however often it was re-sent.
        assert set(recorder.effects.values()) == {1}
        assert len(recorder.effects) == 3 * SAGAS
    finally:
        await log.close()
        await recorder.stop()
