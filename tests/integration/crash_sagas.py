"""The saga the crash tests run in a coordinator subprocess, and that subprocess's entry point.

``--sagas tests.integration.crash_sagas`` loads ``ORDER`` into a plain ``saga coordinator``.
``python -m tests.integration.crash_sagas --nats URL --db URL --failpoint POINT@STEP[/DIR]``
runs a coordinator for ``ORDER`` with a ``Failpoint`` hook that SIGKILLs the process at that
point: the failpoint is given to this one coordinator explicitly, never read by the library.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from saga import Coordinator, NatsTransport, RetryPolicy, Saga, SqlSagaLog, Step, Wait
from saga.coordinator import CoordinatorHooks
from saga.events import EventType, NewEvent
from saga.protocol import Command, Direction

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=50), max_attempts=5)

ORDER = Saga(
    name="crash_order",
    steps=tuple(
        Step(
            name=name,
            service=service,
            command="do",
            compensation="undo",
            retry=FAST,
            compensation_retry=FAST,
            timeout=timedelta(seconds=3),
        )
        for name, service in (("create", "orders"), ("credit", "payments"), ("stock", "inventory"))
    ),
)

BRANCHES = Saga(
    name="crash_branches",
    steps=tuple(
        Step(
            name=name,
            service=service,
            command="do",
            compensation="undo",
            retry=FAST,
            compensation_retry=FAST,
            timeout=timedelta(seconds=3),
            after=(),
        )
        for name, service in (("create", "orders"), ("credit", "payments"), ("stock", "inventory"))
    ),
)
"""The three steps of ORDER as parallel branches: all three go out at once."""

APPROVAL = Saga(
    name="crash_approval",
    steps=(
        Step(name="create", service="orders", command="do", compensation="undo", retry=FAST,
             compensation_retry=FAST, timeout=timedelta(seconds=3)),
        Wait(name="approval", event="approved", timeout=timedelta(minutes=5)),
        Step(name="stock", service="inventory", command="do", compensation="undo", retry=FAST,
             compensation_retry=FAST, timeout=timedelta(seconds=3),
             request=lambda saga_input, results: {"approved_by": results["approval"]["by"]}),
    ),
)  # fmt: skip
"""A step, then a wait for the outside event ``approved``, then a step that uses its payload."""

SAGAS = (ORDER, BRANCHES, APPROVAL)


class Point(StrEnum):
    """Where a failpoint kills the coordinator."""

    ON_REPLY = "on_reply"
    """A reply arrived and is not recorded yet."""
    AFTER_RECORD = "after_record"
    """The step's outcome (succeeded or rejected) is in the log; nothing after it is sent."""
    AFTER_SEND = "after_send"
    """The step's command was recorded and sent."""


_OUTCOMES = (EventType.STEP_SUCCEEDED, EventType.STEP_REJECTED)


@dataclass(frozen=True, kw_only=True)
class Failpoint(CoordinatorHooks):
    """Coordinator hooks that SIGKILL this process when the saga reaches ``point`` at ``step``."""

    point: Point
    """Which hook kills."""
    step: str
    """The step it kills at."""
    direction: Direction | None = None
    """Only at this direction of the step; None: either."""

    def __post_init__(self) -> None:
        if not self.step:
            raise ValueError("a failpoint needs a step")

    @classmethod
    def parse(cls, spec: str) -> Failpoint:
        """``<point>@<step>[/<direction>]``, for example ``after_record@credit/compensate``."""
        point, _, target = spec.partition("@")
        step, _, direction = target.partition("/")
        try:
            return cls(
                point=Point(point), step=step, direction=Direction(direction) if direction else None
            )
        except ValueError as exc:
            points = "|".join(Point)
            raise ValueError(f"failpoint {spec!r}: expected <{points}>@<step>[/<dir>]") from exc

    def _kill_at(self, point: Point, step: object, direction: object) -> None:
        if (point, step) == (self.point, self.step) and self.direction in (None, direction):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_reply(self, command: Command) -> None:
        self._kill_at(Point.ON_REPLY, command.step, command.direction)

    def after_record(self, events: Sequence[NewEvent]) -> None:
        for event in events:
            if event.type is EventType.SIGNAL_RECEIVED:  # after_record@<event name>
                self._kill_at(Point.AFTER_RECORD, event.data["event"], None)
            if event.type in _OUTCOMES:
                direction = Direction(event.data["direction"])
                self._kill_at(Point.AFTER_RECORD, event.data["step"], direction)

    def after_send(self, command: Command) -> None:
        self._kill_at(Point.AFTER_SEND, command.step, command.direction)


async def run(nats_url: str, db_url: str, failpoint: Failpoint | None) -> None:
    """Run a coordinator for SAGAS until SIGTERM (or until the failpoint kills it)."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    coordinator = Coordinator(
        SqlSagaLog(db_url), NatsTransport(nats_url), sagas=list(SAGAS), hooks=failpoint
    )
    async with coordinator:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--failpoint", type=Failpoint.parse, default=None)
    args = parser.parse_args(argv)
    asyncio.run(run(args.nats, args.db, args.failpoint))


if __name__ == "__main__":
    main()
