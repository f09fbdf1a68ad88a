"""The bench's participant program: ``python -m saga.bench.participant --nats URL ...``.

It serves the bench saga's commands (``bench.do``, ``bench.undo``) with ``--replicas``
Participant instances on one NATS queue group, each on its own connection, and beside them:

- a raw responder on ``RAW_SUBJECT`` (replies with an empty body), for the NATS floor;
- control subjects (``CONTROL_PREFIX.*``): ``hold`` makes forward handlers wait, ``release``
  lets them go, ``mark`` starts a new count of the commands seen, ``count`` answers with the
  counts as JSON;
- with ``--tap``, a plain (non-queue) subscription on ``bench.>`` that sees every command
  message, re-sends included (the participant answers a re-sent command from its record or
  waits for the first one, so its handler would not see it).

It prints a line with `` ready: `` once it serves, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from saga import eventloop
from saga.bench.sagas import COMPENSATE, FORWARD, SERVICE, step_index
from saga.errors import ProtocolError, Rejected
from saga.participant import CommandContext, InMemoryIdempotencyStore, Participant
from saga.protocol import Command, Direction
from saga.transport.nats import connect_nats, flush_pending

RAW_SUBJECT = "saga_bench.raw"
CONTROL_PREFIX = "saga_bench.ctl"
READY_LINE = "bench participant ready: "


@dataclass
class State:
    """What the handlers share across replicas: the gate, the delays and the counts."""

    delay_s: float
    slow_after: int
    slow_delay_s: float
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    forward_runs: int = 0
    compensations: int = 0
    entered: int = 0
    """Forward handler calls that have begun (held ones included)."""
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    """(saga, step, direction) of the command messages tapped since the last ``mark``."""
    messages: int = 0
    last_new_at: float = 0.0
    """Wall-clock time of the last command message that added to ``seen``."""
    first_seen: set[str] = field(default_factory=set)
    """Sagas whose first step's command was tapped since the last ``mark`` (recovery's count:
    a restarted coordinator re-sends exactly those)."""
    last_first_at: float = 0.0

    def counts(self) -> dict[str, Any]:
        return {
            "distinct": len(self.seen), "messages": self.messages,
            "last_new_at": self.last_new_at, "entered": self.entered,
            "first": len(self.first_seen), "last_first_at": self.last_first_at,
            "forward_runs": self.forward_runs, "compensations": self.compensations,
        }  # fmt: skip

    def delay(self) -> float:
        if self.slow_after and self.forward_runs > self.slow_after:
            return self.slow_delay_s
        return self.delay_s


def build(state: State, store: InMemoryIdempotencyStore, max_concurrency: int, replica: int) -> (
    Participant
):  # fmt: skip
    participant = Participant(
        SERVICE, store=store, max_concurrency=max_concurrency, instance=f"{SERVICE}-{replica}"
    )

    @participant.command(FORWARD)
    async def do(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        state.entered += 1
        await state.gate.wait()
        state.forward_runs += 1
        delay = state.delay()
        if delay:
            await asyncio.sleep(delay)
        if request.get("reject_at") == step_index(ctx.step):
            raise Rejected(f"the bench rejects step {ctx.step}", code="bench_reject")
        return {}

    @participant.command(COMPENSATE)
    async def undo(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        state.compensations += 1
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        return {}

    return participant


async def serve(args: argparse.Namespace) -> None:
    state = State(
        delay_s=args.delay_ms / 1000, slow_after=args.slow_after,
        slow_delay_s=args.slow_delay_ms / 1000,
    )  # fmt: skip
    if not args.hold:
        state.gate.set()
    # The memory store: the bench measures the coordinator and its log, not a participant's
    # database. One instance shared by the replicas of this process keeps the queue group's
    # dedup whole (a re-send may reach another replica), as one shared database would.
    store = InMemoryIdempotencyStore()
    servers = [
        await build(state, store, args.max_concurrency, r).serve(args.nats)
        for r in range(args.replicas)
    ]
    control = await connect_nats(args.nats, name="saga-bench-control")
    await _control(control, state, args.tap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"{READY_LINE}{args.replicas} replicas on {args.nats}", flush=True)
    try:
        await stop.wait()
    finally:
        state.gate.set()
        for server in servers:
            await server.stop()
        with contextlib.suppress(Exception):
            await control.drain()
    print(f"bench participant stopped: {json.dumps(state.counts())}", flush=True)


async def _control(nc: Client, state: State, tap: bool) -> None:
    async def raw(msg: Msg) -> None:
        await msg.respond(b"")

    async def hold(msg: Msg) -> None:
        state.gate.clear()
        await msg.respond(b"{}")

    async def release(msg: Msg) -> None:
        state.gate.set()
        await msg.respond(b"{}")

    async def mark(msg: Msg) -> None:
        state.seen.clear()
        state.messages = 0
        state.last_new_at = 0.0
        state.first_seen.clear()
        state.last_first_at = 0.0
        await msg.respond(b"{}")

    async def count(msg: Msg) -> None:
        await msg.respond(json.dumps(state.counts()).encode())

    async def watch(msg: Msg) -> None:
        command_name = msg.subject.rsplit(".", 1)[-1]
        try:
            command = Command.decode(
                service=SERVICE, command=command_name, headers=msg.headers, body=msg.data
            )
        except ProtocolError:
            return
        state.messages += 1
        key = (command.saga_id, command.step, command.direction.value)
        if key not in state.seen:
            state.seen.add(key)
            state.last_new_at = time.time()
        first = command.direction is Direction.FORWARD and step_index(command.step) == 1
        if first and command.saga_id not in state.first_seen:
            state.first_seen.add(command.saga_id)
            state.last_first_at = time.time()

    await nc.subscribe(RAW_SUBJECT, queue="saga-bench-raw", cb=raw)
    for name, handler in {"hold": hold, "release": release, "mark": mark, "count": count}.items():
        await nc.subscribe(f"{CONTROL_PREFIX}.{name}", cb=handler)
    if tap:
        await nc.subscribe(f"{SERVICE}.>", cb=watch, pending_msgs_limit=1_000_000)
    await flush_pending(nc)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m saga.bench.participant")
    parser.add_argument("--nats", required=True, help="NATS server URL")
    parser.add_argument("--replicas", type=int, default=1, help="Participant instances")
    parser.add_argument("--max-concurrency", type=int, default=64, help="per replica")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="per command")
    parser.add_argument(
        "--slow-after",
        type=int,
        default=0,
        help="after this many forward commands, use --slow-delay-ms (0: never)",
    )
    parser.add_argument("--slow-delay-ms", type=float, default=0.0)
    parser.add_argument("--hold", action="store_true", help="start holding forward commands")
    parser.add_argument("--tap", action="store_true", help="count every command message")
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.max_concurrency < 1:
        parser.error("--replicas and --max-concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    eventloop.run(serve(parse(argv)))


if __name__ == "__main__":
    main()
