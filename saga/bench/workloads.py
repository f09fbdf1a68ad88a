"""The workloads: throughput (and the flow preset), recovery after SIGKILL, and list."""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from saga.bench.env import BenchDb, BenchError, Echo, Env
from saga.bench.sagas import bench_saga
from saga.coordinator import Coordinator
from saga.coordinator.coordinator import saga_start
from saga.coordinator.result import SagaChange
from saga.definition import Saga
from saga.events import EventType, SagaStatus
from saga.log.base import SagaQuery
from saga.log.paging import MAX_PAGE_SIZE
from saga.log.sql import SqlSagaLog
from saga.transport.nats import NatsTransport

PROGRESS_EVERY_S = 2.0
WARMUP_SAGAS = 32
"""Run before the measured window (not counted): connections, caches and code paths warm."""
POLL_S = 0.02
FILL_BATCH = 5_000
LIST_REPEATS = 7


@dataclass(frozen=True, kw_only=True)
class Workload:
    steps: int = 3
    sagas: int = 5_000
    in_flight: int = 256
    reject_step: int = 0
    """Step the participant rejects (1-based; 0: none)."""
    reject_rate: float = 0.0
    """Fraction of sagas whose ``reject_step`` is rejected."""
    seed: int = 1
    memory_sagas: int = 1_000
    timeout_s: float = 600.0

    def inputs(self, count: int, rng: random.Random, base: int = 0) -> list[dict[str, Any]]:
        found = []
        for i in range(count):
            item: dict[str, Any] = {"i": base + i}
            if self.reject_step and rng.random() < self.reject_rate:
                item["reject_at"] = self.reject_step
            found.append(item)
        return found


@dataclass
class Tally:
    """Counts from the coordinator's change listener: log writes, replies, timeouts."""

    writes: int = 0
    answered: int = 0
    timeouts: int = 0
    compensations: int = 0

    def reset(self) -> None:
        self.writes = self.answered = self.timeouts = self.compensations = 0

    def on_change(self, change: SagaChange) -> None:
        self.writes += 1
        for event in change.events:
            if event.type in (EventType.STEP_SUCCEEDED, EventType.STEP_REJECTED):
                self.answered += 1
                if event.data.get("direction") == "compensate":
                    self.compensations += 1
            elif event.type is EventType.STEP_FAILED:
                error = event.data.get("error") or {}
                if isinstance(error, dict) and error.get("code") == "timeout":
                    self.timeouts += 1


@dataclass
class Drive:
    """What one window of sagas did."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    started: int = 0

    @property
    def ended(self) -> int:
        return len(self.latencies)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


async def drive(
    coordinator: Coordinator, defn: Saga, inputs: list[dict[str, Any]], in_flight: int,
    run: Drive | None = None,
) -> Drive:  # fmt: skip
    """Start every input, keeping at most ``in_flight`` sagas unfinished; wait for all."""
    run = run or Drive()
    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def one(saga_input: dict[str, Any]) -> None:
        try:
            began = time.perf_counter()
            handle = await coordinator.start(defn, saga_input)
            result = await handle.result()
            run.latencies.append(time.perf_counter() - began)
            run.statuses[result.status.value] += 1
        finally:
            slots.release()

    try:
        for saga_input in inputs:
            await slots.acquire()
            run.started += 1
            task = asyncio.create_task(one(saga_input))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return run


async def _progress(run: Drive, total: int, echo: Echo) -> None:
    began = time.perf_counter()
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        seconds = time.perf_counter() - began
        echo(
            f"  bench: {run.ended}/{total} sagas ended, {run.started - run.ended} in flight,"
            f" {run.ended / seconds:.0f} sagas/s"
        )


async def throughput(work: Workload, env: Env, db: BenchDb, echo: Echo) -> dict[str, Any]:
    """Sagas through an in-process coordinator (SqlSagaLog + NatsTransport)."""
    defn = bench_saga(work.steps)
    rng = random.Random(work.seed)
    tally = Tally()
    coordinator = Coordinator(SqlSagaLog(db.url), NatsTransport(env.nats_url), sagas=[defn])
    coordinator.add_listener(tally.on_change)
    figures: dict[str, Any] = {}
    async with coordinator:
        warm = [{"i": -1 - i} for i in range(min(WARMUP_SAGAS, work.sagas))]
        await drive(coordinator, defn, warm, work.in_flight)
        tally.reset()
        run = Drive()
        progress = asyncio.create_task(_progress(run, work.sagas, echo))
        cpu, began = time.process_time(), time.perf_counter()
        try:
            async with asyncio.timeout(work.timeout_s):
                await drive(coordinator, defn, work.inputs(work.sagas, rng), work.in_flight, run)
        except TimeoutError:
            echo(f"  bench: not every saga ended within {work.timeout_s:g} s")
        finally:
            progress.cancel()
        seconds = time.perf_counter() - began
        cpu = time.process_time() - cpu
        ended = max(run.ended, 1)
        figures |= {
            "seconds": seconds,
            "sagas_per_s": run.ended / seconds,
            "steps_per_s": tally.answered / seconds,
            "p50_ms": percentile(run.latencies, 50) * 1000,
            "p95_ms": percentile(run.latencies, 95) * 1000,
            "p99_ms": percentile(run.latencies, 99) * 1000,
            "cpu_us_per_saga": cpu / ended * 1e6,
            "log_writes_per_saga": tally.writes / ended,
            "completed": run.statuses["completed"],
            "compensated": run.statuses["compensated"],
            "stuck": run.statuses["stuck"],
            "unfinished": work.sagas - run.ended,
            "step_timeouts": tally.timeouts,
            "compensations": tally.compensations,
        }
        figures["mem_bytes_per_saga"] = (
            await memory_per_saga(coordinator, defn, env, work.memory_sagas)
            if work.memory_sagas
            else None
        )
    return figures


async def memory_per_saga(coordinator: Coordinator, defn: Saga, env: Env, n: int) -> float:
    """Python heap held per in-flight saga: tracemalloc's traced size while ``n`` sagas wait
    on a held participant (a few dozen sent, the rest queued by flow control), less the size
    before they started, over ``n``.

    tracemalloc counts this process's Python allocations only (the coordinator's state, the
    transport's pending commands, the client buffers and the bench's handles), and unlike RSS
    it does not move with the allocator's arenas, so it is stable from run to run.
    """
    await env.control("hold")
    handles = []

    def waiting() -> int:
        # Sent and unanswered, or queued by flow control for a free slot: in flight either way.
        return sum(load.in_flight + load.queued for load in coordinator.service_load())

    try:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        pending = waiting()
        handles = await asyncio.gather(
            *(coordinator.start(defn, {"i": -1_000_000 - k}) for k in range(n))
        )
        async with asyncio.timeout(60):
            while waiting() < pending + n:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(POLL_S)
        await asyncio.sleep(0.2)  # the writer's last batch settles
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        await env.control("release")
    async with asyncio.timeout(120):
        await asyncio.gather(*(h.result() for h in handles))
    return (held - before) / n


# -- recovery ---------------------------------------------------------------------------------


async def recovery(work: Workload, env: Env, db: BenchDb, echo: Echo) -> dict[str, Any]:
    """N sagas in flight, the coordinator SIGKILLed and restarted: how long until every
    command is re-sent, and until every saga has ended.

    The first coordinator resumes N freshly written sagas and records each one's first
    command (write-ahead) while the participant holds what it receives; flow control sends
    only a few dozen of them. Once all N are recorded as sent it is SIGKILLed: N sagas in
    flight. The participant then answers again, and a second coordinator is started: it must
    re-send all N (through the same flow control, so at the participant's pace) and end them.
    """
    from saga.bench.sagas import RECOVERY_SAGAS

    defn = RECOVERY_SAGAS[work.steps - 1]
    log = SqlSagaLog(db.url)
    await log.open()
    try:
        now = int(time.time() * 1000)
        rng = random.Random(work.seed)
        inputs = work.inputs(work.sagas, rng)
        for start in range(0, len(inputs), FILL_BATCH):
            batch = inputs[start : start + FILL_BATCH]
            await log.create_many([
                saga_start(defn, item, f"r{item['i']:08d}", now) for item in batch
            ])  # fmt: skip
    finally:
        await log.close()
    n = work.sagas
    argv = [sys.executable, "-m", "saga", "coordinator", "--nats", env.nats_url, "--db", db.url,
            "--sagas", "saga.bench.sagas:RECOVERY_SAGAS"]  # fmt: skip
    from saga.dev import Children

    coordinators = Children(log_dir=env.children.log_dir, cwd=env.children.cwd)
    limit = 120 + n * 0.02
    try:
        began = time.time()
        first = await coordinators.start("coordinator-1", argv)
        await _await_recorded(db, n, defn.steps[0].name, limit, first, echo)
        first_send_s = time.time() - began
        echo(f"  bench: coordinator 1 recorded all {n} first commands in {first_send_s:.2f} s;"
             " SIGKILL")  # fmt: skip
        coordinators.kill(first)
        await first.process.wait()
        await env.control("release")
        await env.control("mark")
        restarted = time.time()
        second = await coordinators.start("coordinator-2", argv)
        counts = await _await_first_commands(env, n, limit, second, echo)
        resend_s = counts["last_first_at"] - restarted
        echo(f"  bench: restarted coordinator re-sent all {n} in {resend_s:.2f} s")
        statuses = await _await_ended(db, n, limit, second)
        ended_s = time.time() - restarted
    finally:
        await coordinators.stop()
    return {
        "recovery_first_send_s": first_send_s,
        "recovery_resend_s": resend_s,
        "recovery_end_s": ended_s,
        "recovery_total_s": time.time() - restarted,
        "resent": counts["first"],
        "completed": statuses["completed"],
        "compensated": statuses["compensated"],
        "stuck": statuses["stuck"],
        "unfinished": n - sum(statuses.values()),
    }


async def _await_recorded(
    db: BenchDb, n: int, first_step: str, limit_s: float, child: Any, echo: Echo
) -> None:
    """Wait until every saga's first command is recorded (its row's current step is set)."""
    log = SqlSagaLog(db.url, migrate=False)
    await log.open()
    try:
        deadline = time.monotonic() + limit_s
        said = time.monotonic()
        sent = SagaQuery(
            statuses=[SagaStatus.RUNNING], current_step=first_step, limit=MAX_PAGE_SIZE
        )
        while len(await log.find_all(sent)) < n:
            if child.process.returncode is not None:
                raise BenchError(f"the coordinator exited with code {child.process.returncode}"
                                 f" (log {child.log_path})")  # fmt: skip
            if time.monotonic() > deadline:
                raise BenchError(f"the sagas' first commands were not recorded in {limit_s:.0f} s")
            if time.monotonic() - said > PROGRESS_EVERY_S:
                said = time.monotonic()
                echo(f"  bench: {child.name}: recording the first commands")
            await asyncio.sleep(POLL_S)
    finally:
        await log.close()


async def _await_first_commands(
    env: Env, n: int, limit_s: float, child: Any, echo: Echo
) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    said = time.monotonic()
    while True:
        counts = await env.control("count")
        if counts["first"] >= n:
            return counts
        if time.monotonic() - said > PROGRESS_EVERY_S:
            said = time.monotonic()
            echo(f"  bench: {child.name}: {counts['first']}/{n} first commands sent")
        if child.process.returncode is not None:
            raise BenchError(f"the coordinator exited with code {child.process.returncode}"
                             f" (log {child.log_path})")  # fmt: skip
        if time.monotonic() > deadline:
            raise BenchError(
                f"only {counts['first']} of {n} first commands arrived in {limit_s:.0f} s"
            )
        await asyncio.sleep(POLL_S)


async def _await_ended(db: BenchDb, n: int, limit_s: float, child: Any) -> Counter[str]:
    log = SqlSagaLog(db.url)
    await log.open()
    try:
        deadline = time.monotonic() + limit_s
        open_ones = SagaQuery(statuses=[SagaStatus.RUNNING, SagaStatus.COMPENSATING], limit=1)
        while (await log.find(open_ones)).sagas:
            if child.process.returncode is not None:
                raise BenchError(f"the coordinator exited with code {child.process.returncode}")
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        found = Counter(r.status.value for r in await log.find_all(SagaQuery(limit=1000)))
        return Counter({k: v for k, v in found.items() if k not in ("running", "compensating")})
    finally:
        await log.close()


# -- list -------------------------------------------------------------------------------------


async def list_pages(rows: int, db: BenchDb, echo: Echo) -> dict[str, Any]:
    """Fill the log with ``rows`` sagas by bulk insert, then time single pages of ``find``."""
    defn = bench_saga(3)
    log = SqlSagaLog(db.url)
    await log.open()
    try:
        now = int(time.time() * 1000) - rows
        run = uuid.uuid4().hex[:6]
        began = time.perf_counter()
        last = began
        for start in range(0, rows, FILL_BATCH):
            batch = [
                saga_start(defn, {"i": i}, f"l{run}{i:09d}", now + i)
                for i in range(start, min(rows, start + FILL_BATCH))
            ]
            await log.create_many(batch)
            if time.perf_counter() - last > PROGRESS_EVERY_S:
                last = time.perf_counter()
                echo(f"  bench: {start + len(batch)}/{rows} rows inserted")
        fill_s = time.perf_counter() - began
        queries: dict[str, SagaQuery] = {
            "list_newest_ms": SagaQuery(limit=100),
            "list_by_status_ms": SagaQuery(statuses=[SagaStatus.RUNNING], limit=100),
            "list_by_name_ms": SagaQuery(name=defn.name, limit=100),
        }
        figures: dict[str, Any] = {
            "rows": rows, "fill_s": fill_s, "fill_rows_per_s": rows / fill_s,
        }  # fmt: skip
        for key, query in queries.items():
            figures[key] = await _median_ms(functools.partial(log.find, query))
        tenth = SagaQuery(limit=100)
        for _ in range(9):
            next_query = tenth.next_page(await log.find(tenth))
            if next_query is None:
                break
            tenth = next_query
        figures["list_tenth_page_ms"] = await _median_ms(lambda: log.find(tenth))
    finally:
        await log.close()
    return figures


async def _median_ms(call: Callable[[], Any]) -> float:
    await call()  # warm: the first call pays for the statement cache
    times = []
    for _ in range(LIST_REPEATS):
        began = time.perf_counter()
        await call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)
