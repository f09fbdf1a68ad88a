"""The coordinators of ``saga soak``: ``saga coordinator`` processes that it SIGKILLs and
restarts, and SIGSTOPs past their lease and SIGCONTs, each on its own schedule.

Victims are picked among the coordinators that run (neither paused nor restarting), so a kill
never lands on a paused process and a pause never on one that is still starting; at most one
coordinator is paused and one restarting at a time. A pause always ends with SIGCONT, when its
time is up, when the soak settles, or when the task is cancelled; ``Children.stop`` sends
SIGCONT again after its SIGTERM, so a stopped process still sees the TERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from saga.dev import Child, Children

COORDINATOR_READY = "HTTP API and dashboard on"
"""What ``saga coordinator --http`` prints once it serves."""
PAUSE_LEASES = (1.5, 2.0)
"""A pause lasts between these many leases: past the lease, so the others take over."""


def _signal(child: Child | None, sig: signal.Signals) -> None:
    if child is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)


async def _sleep_unless(done: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``done`` is set first; whether it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), max(seconds, 0.0))
    return done.is_set()


@dataclass
class CoordinatorProcess:
    """One ``saga coordinator --http`` subprocess, restarted under its name after a SIGKILL."""

    children: Children
    name: str
    """Its ``--name``: a restart takes over at once what its predecessor owned."""
    argv: list[str]
    url: str
    """Its HTTP API, ``http://host:port``."""
    env: dict[str, str] = field(default_factory=dict)
    child: Child | None = None
    kills: int = 0
    pauses: int = 0
    paused: bool = False
    restarting: bool = False

    @property
    def running(self) -> bool:
        """Started, alive, not paused and not being restarted: a fair victim."""
        return (
            self.child is not None
            and self.child.process.returncode is None
            and not self.paused
            and not self.restarting
        )

    async def start(self) -> None:
        self.child = await self.children.start(self.name, self.argv, self.env)
        await self.children.wait_ready(self.child, marker=COORDINATOR_READY)

    async def kill_and_restart(self) -> None:
        self.restarting = True
        try:
            if self.child is not None:
                self.children.kill(self.child)
                await self.child.process.wait()
                self.kills += 1
            await self.start()
        finally:
            self.restarting = False

    async def pause(self, seconds: float, done: asyncio.Event) -> None:
        """SIGSTOP for ``seconds`` (less if ``done`` is set), then SIGCONT, whatever happens."""
        self.paused = True
        self.pauses += 1
        _signal(self.child, signal.SIGSTOP)
        try:
            await _sleep_unless(done, seconds)
        finally:
            _signal(self.child, signal.SIGCONT)
            self.paused = False


@dataclass
class Fleet:
    """The soak's coordinators and the schedules that break them."""

    coordinators: list[CoordinatorProcess]
    lease_s: float
    """The coordinators' lease; a pause outlasts it."""
    rng: random.Random

    @property
    def urls(self) -> list[str]:
        return [c.url for c in self.coordinators]

    @property
    def kills(self) -> int:
        return sum(c.kills for c in self.coordinators)

    @property
    def pauses(self) -> int:
        return sum(c.pauses for c in self.coordinators)

    async def start(self) -> None:
        await asyncio.gather(*(c.start() for c in self.coordinators))

    def _victim(self, rng: random.Random) -> CoordinatorProcess | None:
        running = [c for c in self.coordinators if c.running]
        return rng.choice(running) if running else None

    async def keep_killing(self, every_s: float, done: asyncio.Event) -> None:
        """Until ``done``: SIGKILL a running coordinator at a random moment 0.5 to 1.5 times
        ``every_s`` after the last restart finished, and restart it."""
        rng = random.Random(self.rng.random())
        while not await _sleep_unless(done, rng.uniform(0.5, 1.5) * every_s):
            victim = self._victim(rng)
            if victim is not None:
                await victim.kill_and_restart()

    async def keep_pausing(self, every_s: float, done: asyncio.Event) -> None:
        """Until ``done``: SIGSTOP a running coordinator 0.5 to 1.5 times ``every_s`` after the
        last pause began, for 1.5 to 2 leases, then SIGCONT it."""
        rng = random.Random(self.rng.random())
        loop = asyncio.get_running_loop()
        began = loop.time()
        while not await _sleep_unless(done, began + rng.uniform(0.5, 1.5) * every_s - loop.time()):
            began = loop.time()
            victim = self._victim(rng)
            if victim is not None:
                await victim.pause(self.lease_s * rng.uniform(*PAUSE_LEASES), done)

    async def disrupt(self, kill_every_s: float, pause_every_s: float, done: asyncio.Event) -> None:
        """Kill and pause on their schedules (0: never) until ``done``. If one schedule fails
        (a coordinator that will not start again), the other is cancelled and the error raised."""
        loops: list[Callable[[], Awaitable[object]]] = [done.wait]
        if kill_every_s > 0:
            loops.append(lambda: self.keep_killing(kill_every_s, done))
        if pause_every_s > 0:
            loops.append(lambda: self.keep_pausing(pause_every_s, done))
        tasks = [asyncio.ensure_future(run()) for run in loops]
        try:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in finished:
                failure = None if task.cancelled() else task.exception()
                if failure is not None:
                    raise failure
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
