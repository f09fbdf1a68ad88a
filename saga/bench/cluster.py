"""The throughput workload across N coordinator processes on one log, and the lease's cost.

``saga bench --coordinators N`` starts N ``python -m saga.bench.coordinator`` processes on the
run's fresh database and sends the starts round robin over them (a NATS request each to the
chosen coordinator's own subject, answered when the saga has ended), keeping ``--in-flight``
sagas unfinished in all. Each coordinator owns the sagas it starts; the lease task of each
balances ownership every 2.5 s, so a saga may end on another coordinator than the one that
started it (the figures count those: claimed, handed back).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saga.bench.coordinator import READY_LINE, START_PREFIX, STATS_PREFIX, coordinator_name
from saga.bench.env import CONTROL_TIMEOUT_S, STOP_GRACE_S, BenchDb, BenchError, Echo, Env
from saga.bench.sagas import bench_saga
from saga.bench.workloads import PROGRESS_EVERY_S, WARMUP_SAGAS, Workload, percentile
from saga.coordinator.coordinator import RECOVER_BATCH
from saga.dev import Child, Children
from saga.log.ownership import DEFAULT_LEASE_MS, Load
from saga.log.sql import SqlSagaLog

READY_TIMEOUT_S = 120.0
"""A coordinator process's start-up (imports, migrations checked, join, NATS) on a loaded
machine."""
LEASE_WARMUP = 5
"""Renewals before the timed ones: the pool's connections open, statements prepared."""


@dataclass
class Spread:
    """Latencies and outcomes of the sagas started on each coordinator."""

    n: int
    latencies: list[list[float]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    started: int = 0

    def __post_init__(self) -> None:
        self.latencies = [[] for _ in range(self.n)]

    @property
    def ended(self) -> int:
        return sum(len(each) for each in self.latencies)


async def _stats(env: Env, index: int) -> dict[str, Any]:
    msg = await env.nc.request(f"{STATS_PREFIX}.{index}", b"", timeout=CONTROL_TIMEOUT_S)
    found: dict[str, Any] = json.loads(msg.data)
    return found


async def _drive(
    env: Env, n: int, saga: str, inputs: list[dict[str, Any]], in_flight: int, run: Spread,
    timeout_s: float,
) -> None:  # fmt: skip
    """Start every input on coordinator i mod n, at most ``in_flight`` unfinished at once."""
    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, saga_input: dict[str, Any]) -> None:
        try:
            body = json.dumps({"saga": saga, "input": saga_input}).encode()
            began = time.perf_counter()
            msg = await env.nc.request(f"{START_PREFIX}.{index}", body, timeout=timeout_s)
            answer = json.loads(msg.data)
            if "error" in answer:
                run.errors.append(str(answer["error"]))
                return
            run.latencies[index].append(time.perf_counter() - began)
            run.statuses[answer["status"]] += 1
        finally:
            slots.release()

    try:
        for i, saga_input in enumerate(inputs):
            await slots.acquire()
            run.started += 1
            task = asyncio.create_task(one(i % n, saga_input))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def _watch(children: list[Child]) -> None:
    """Raise BenchError as soon as a coordinator process exits."""
    while True:
        for child in children:
            if child.process.returncode is not None:
                raise BenchError(f"{child.name} exited with code {child.process.returncode}"
                                 f" during the run (log {child.log_path})")  # fmt: skip
        await asyncio.sleep(0.2)


async def _progress(run: Spread, total: int, echo: Echo) -> None:
    began = time.perf_counter()
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        seconds = time.perf_counter() - began
        echo(f"  bench: {run.ended}/{total} sagas ended, {run.started - run.ended} in flight,"
             f" {run.ended / seconds:.0f} sagas/s")  # fmt: skip


async def _ready(coordinators: Children, child: Child) -> None:
    try:
        await coordinators.wait_ready(child, marker=READY_LINE, timeout_s=READY_TIMEOUT_S)
    except Exception as exc:
        raise BenchError(f"{child.name} did not start (log {child.log_path})") from exc


async def throughput_across(
    work: Workload, n: int, env: Env, db: BenchDb, echo: Echo, *, event_loop: str
) -> dict[str, Any]:
    """The throughput workload with its sagas started round robin over ``n`` coordinator
    processes; figures in total and per coordinator."""
    if n > 1 and db.kind != "postgresql":
        raise BenchError(f"{n} coordinators need PostgreSQL: a SQLite log allows one")
    defn = bench_saga(work.steps)
    rng = random.Random(work.seed)
    coordinators = Children(log_dir=env.children.log_dir, cwd=env.children.cwd)
    try:
        children = []
        for k in range(n):
            argv = [sys.executable, "-m", "saga.bench.coordinator", "--nats", env.nats_url,
                    "--db", db.url, "--index", str(k), "--event-loop", event_loop]  # fmt: skip
            children.append(await coordinators.start(coordinator_name(k), argv))
        await asyncio.gather(*(_ready(coordinators, child) for child in children))
        echo(f"  bench: {n} coordinator process(es) ready")
        watch = asyncio.create_task(_watch(children))
        try:
            return await _measure(work, n, env, defn.name, rng, echo, watch)
        finally:
            watch.cancel()
    finally:
        await coordinators.stop(grace_s=STOP_GRACE_S)


async def _measure(
    work: Workload, n: int, env: Env, saga: str, rng: random.Random, echo: Echo,
    watch: asyncio.Task[None],
) -> dict[str, Any]:  # fmt: skip
    async def guarded(coro: Any) -> None:
        """``coro``, or the watcher's BenchError if a coordinator dies first."""
        job = asyncio.ensure_future(coro)
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            job.cancel()
            watch.result()  # raises the BenchError
        job.result()

    warm = [{"i": -1 - i} for i in range(min(WARMUP_SAGAS * n, max(work.sagas, n)))]
    await guarded(_drive(env, n, saga, warm, work.in_flight, Spread(n), work.timeout_s))
    before = await asyncio.gather(*(_stats(env, k) for k in range(n)))
    run = Spread(n)
    progress = asyncio.create_task(_progress(run, work.sagas, echo))
    began = time.perf_counter()
    try:
        async with asyncio.timeout(work.timeout_s):
            await guarded(_drive(env, n, saga, work.inputs(work.sagas, rng), work.in_flight,
                                 run, work.timeout_s))  # fmt: skip
    except TimeoutError:
        echo(f"  bench: not every saga ended within {work.timeout_s:g} s")
    finally:
        progress.cancel()
    seconds = time.perf_counter() - began
    after = await asyncio.gather(*(_stats(env, k) for k in range(n)))
    if run.errors:
        echo(f"  bench: {len(run.errors)} starts refused, the first: {run.errors[0]}")
    return _figures(work, n, run, seconds, before, after)


def _figures(
    work: Workload, n: int, run: Spread, seconds: float, before: list[dict[str, Any]],
    after: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    def delta(k: int, key: str) -> Any:
        return after[k][key] - before[k][key]

    per = []
    for k in range(n):
        per.append({
            "name": after[k]["name"],
            "started": len(run.latencies[k]),
            "sagas_per_s": delta(k, "ended") / seconds,
            "ended_here": delta(k, "ended"),
            "replies": delta(k, "replies"),
            "cpu_us_per_saga": delta(k, "cpu_s") / max(delta(k, "ended"), 1) * 1e6,
            "cpu_share": delta(k, "cpu_s") / seconds,
            "p50_ms": percentile(run.latencies[k], 50) * 1000,
            "p99_ms": percentile(run.latencies[k], 99) * 1000,
            "claimed": delta(k, "claimed"),
            "released": delta(k, "released"),
            "fenced_writes": delta(k, "fenced_writes"),
            "leases_lost": delta(k, "leases_lost"),
        })  # fmt: skip
    latencies = [x for each in run.latencies for x in each]
    ended = max(run.ended, 1)
    replies = [c["replies"] for c in per]
    cpu = sum(delta(k, "cpu_s") for k in range(n))
    return {
        "coordinators": n,
        "seconds": seconds,
        "sagas_per_s": run.ended / seconds,
        "steps_per_s": sum(replies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "cpu_us_per_saga": cpu / ended * 1e6,
        "log_writes_per_saga": sum(delta(k, "writes") for k in range(n)) / ended,
        # The fewest replies any coordinator recorded over the most: 1.0 is an even spread.
        "spread": min(replies) / max(replies) if max(replies) > 0 else float("nan"),
        "claimed": sum(c["claimed"] for c in per),
        "released": sum(c["released"] for c in per),
        "fenced_writes": sum(c["fenced_writes"] for c in per),
        "leases_lost": sum(c["leases_lost"] for c in per),
        "refused": len(run.errors),
        "completed": run.statuses["completed"],
        "compensated": run.statuses["compensated"],
        "stuck": run.statuses["stuck"],
        "unfinished": work.sagas - run.ended,
        "per_coordinator": per,
    }


# -- the lease's cost -------------------------------------------------------------------------


async def lease_cost(db: BenchDb, seconds: float) -> dict[str, Any]:
    """What a coordinator's lease tick costs on this database: ``Ownership.renew``, then the
    balance step's ``census`` and a ``claim`` that finds nothing (the run's sagas have all
    ended), in a loop for ``seconds``, as one more coordinator joined for the purpose.

    Wall time per tick and per operation, the bench process's CPU per tick, and on a local
    PostgreSQL the server's CPU for it (its backends' CPU time in /proc); from them, the share
    of one core a coordinator spends on its lease at the default interval (lease / 4).
    """
    log = SqlSagaLog(db.url, migrate=False)
    await log.open()
    ownership = log.ownership
    me = f"saga-bench-lease-{uuid.uuid4().hex[:8]}"
    times: dict[str, list[float]] = {"renew": [], "census": [], "claim": []}
    claimed = 0
    try:
        await ownership.join(me, me, DEFAULT_LEASE_MS)

        async def tick(record: bool) -> None:
            nonlocal claimed
            t0 = time.perf_counter()
            if not await ownership.renew(me, DEFAULT_LEASE_MS, Load()):
                raise BenchError("the lease probe lost its lease")
            t1 = time.perf_counter()
            await ownership.census()
            t2 = time.perf_counter()
            claimed += len(await ownership.claim(me, RECOVER_BATCH))
            t3 = time.perf_counter()
            if record:
                times["renew"].append(t1 - t0)
                times["census"].append(t2 - t1)
                times["claim"].append(t3 - t2)

        for _ in range(LEASE_WARMUP):
            await tick(False)
        backends = await _backends(db)
        server_before = _cpu_of(backends)
        cpu_before = time.process_time()
        began = time.perf_counter()
        while time.perf_counter() - began < seconds or not times["renew"]:
            await tick(True)
        cpu = time.process_time() - cpu_before
        server_after = _cpu_of(backends)
    finally:
        try:
            await ownership.leave(me)
        finally:
            await log.close()
    ticks = len(times["renew"])
    wall = [sum(parts) for parts in zip(*times.values(), strict=True)]
    server = None
    if server_before is not None and server_after is not None:
        server = (server_after - server_before) / ticks * 1e6
    interval_s = DEFAULT_LEASE_MS / 4 / 1000
    cpu_us = cpu / ticks * 1e6
    return {
        "lease_ticks": ticks,
        "lease_tick_us": statistics.median(wall) * 1e6,
        "lease_renew_us": statistics.median(times["renew"]) * 1e6,
        "lease_census_us": statistics.median(times["census"]) * 1e6,
        "lease_claim_us": statistics.median(times["claim"]) * 1e6,
        "lease_cpu_us": cpu_us,
        "lease_db_cpu_us": server,
        "lease_interval_s": interval_s,
        "lease_core_share": (cpu_us + (server or 0.0)) / 1e6 / interval_s,
        "lease_claimed": claimed,
    }


async def _backends(db: BenchDb) -> list[int]:
    """PostgreSQL: the server processes of the bench database's connections, when the server
    runs on this machine (checked by each one's command line); empty otherwise."""
    if db.kind != "postgresql":
        return []
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(db.pg_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return _local([int(row["pid"]) for row in rows])


def _local(pids: list[int]) -> list[int]:
    """``pids`` if each is a postgres process on this machine, else empty (another machine,
    or another container's pid namespace, where the same numbers are other processes)."""
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        if not cmdline.startswith(b"postgres"):
            return []
    return pids


def _cpu_of(pids: list[int]) -> float | None:
    """CPU seconds (user + system) these processes have used; None if any is unreadable."""
    if not pids:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / ticks
