"""The bench's coordinator program: ``python -m saga.bench.coordinator --nats URL --db URL
--index K``, one of the ``saga bench --coordinators N`` processes.

It runs a ``Coordinator`` (``SqlSagaLog`` + ``NatsTransport``, named ``bench-K``, the default
lease and flow control) with the bench sagas, as ``saga coordinator`` would, and beside it, on
the bench's own NATS subjects (so the bench sends each start to the coordinator it chooses):

- ``START_PREFIX.K``: start a bench saga (body ``{"saga": NAME, "input": {...}}``) and answer
  once it has ended: ``{"status": ...}``, or ``{"error": ...}`` if it could not be started;
- ``STATS_PREFIX.K``: this process's CPU time and the coordinator's counters, as JSON.

It prints a line with `` ready: `` once it serves, and stops (handing its sagas back) on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from typing import Any

from nats.aio.msg import Msg

from saga import eventloop
from saga.bench.sagas import SAGAS
from saga.coordinator import Coordinator
from saga.coordinator.result import SagaChange
from saga.errors import SagaError
from saga.events import EventType
from saga.log.sql import SqlSagaLog
from saga.transport.nats import NatsTransport, connect_nats, flush_pending

START_PREFIX = "saga_bench.start"
STATS_PREFIX = "saga_bench.stats"
READY_LINE = "bench coordinator ready: "
_ENDS = (EventType.SAGA_COMPLETED, EventType.SAGA_COMPENSATED, EventType.SAGA_STUCK)


def coordinator_name(index: int) -> str:
    """The name coordinator ``index`` (0-based) joins under: ``bench-1``, ``bench-2``..."""
    return f"bench-{index + 1}"


class Counts:
    """What this coordinator recorded, from its change listener."""

    def __init__(self) -> None:
        self.writes = 0
        """Changes recorded (creates and appends)."""
        self.replies = 0
        """Replies recorded (forward steps and compensations)."""
        self.ended = 0
        """Sagas whose end (completed, compensated, stuck) was recorded here."""
        self.started = 0
        """Start requests answered with an outcome."""
        self.errors = 0
        """Start requests answered with an error."""

    def on_change(self, change: SagaChange) -> None:
        self.writes += 1
        for event in change.events:
            if event.type in (EventType.STEP_SUCCEEDED, EventType.STEP_REJECTED):
                self.replies += 1
            elif event.type in _ENDS:
                self.ended += 1


async def serve(args: argparse.Namespace) -> None:
    counts = Counts()
    coordinator = Coordinator(
        SqlSagaLog(args.db),
        NatsTransport(args.nats),
        sagas=SAGAS,
        name=coordinator_name(args.index),
    )
    coordinator.add_listener(counts.on_change)
    tasks: set[asyncio.Task[None]] = set()

    async def start(msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            handle = await coordinator.start(body["saga"], body.get("input") or {})
            result = await handle.result()
        except (SagaError, ValueError, KeyError, TypeError) as exc:
            counts.errors += 1
            answer: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            counts.started += 1
            answer = {"status": result.status.value}
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(answer).encode())

    async def on_start(msg: Msg) -> None:
        # nats-py awaits one callback at a time per subscription: each start gets a task.
        task = asyncio.create_task(start(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def on_stats(msg: Msg) -> None:
        stats = {
            "name": coordinator.name, "coordinator_id": coordinator.coordinator_id,
            "cpu_s": time.process_time(), "writes": counts.writes, "replies": counts.replies,
            "ended": counts.ended, "started": counts.started, "errors": counts.errors,
            "claimed": coordinator.claimed, "released": coordinator.released,
            "fenced_writes": coordinator.fenced_writes, "leases_lost": coordinator.leases_lost,
            "active": coordinator.active_count,
        }  # fmt: skip
        await msg.respond(json.dumps(stats).encode())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with coordinator:
        nc = await connect_nats(args.nats, name=f"saga-bench-{coordinator.name}")
        try:
            await nc.subscribe(f"{START_PREFIX}.{args.index}", cb=on_start,
                               pending_msgs_limit=1_000_000)  # fmt: skip
            await nc.subscribe(f"{STATS_PREFIX}.{args.index}", cb=on_stats)
            await flush_pending(nc)
            print(f"{READY_LINE}{coordinator.coordinator_id} on {args.nats}", flush=True)
            await stop.wait()
        finally:
            for task in list(tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await nc.close()
    print(f"bench coordinator stopped: {counts.ended} sagas ended here", flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m saga.bench.coordinator")
    parser.add_argument("--nats", required=True, help="NATS server URL")
    parser.add_argument("--db", required=True, help="the saga log's URL")
    parser.add_argument("--index", type=int, required=True, help="0-based: its start subject")
    parser.add_argument("--event-loop", choices=["auto", "asyncio"], default="auto")
    args = parser.parse_args(argv)
    if args.index < 0:
        parser.error("--index must be at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    eventloop.run(serve(args), uvloop=args.event_loop == "auto")


if __name__ == "__main__":
    main()
