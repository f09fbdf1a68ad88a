"""explore(): run a user's saga under every fault schedule up to a bound, checking invariants.

The first run has no faults; it records the points of the saga (each command the coordinator
sends). Every later schedule adds one fault at a point after the last fault of a schedule
that already ran, so faults meet the points that earlier faults created (a retry, a
compensation, a re-send after a restart). Schedules run breadth first: all single faults,
then pairs, up to ``max_faults``; the first failure found has the fewest faults.

Sagas that are graphs have several commands in flight at once. Each of them is a point of
its own (faults meet each branch), and at a command that was in flight together with others
the explorer also tries ``DELAY_REPLY``: its reply arrives after all the others were
answered and acted on, so the orders in which branches finish are explored too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from saga.coordinator import SagaResult
from saga.definition import Saga
from saga.events import JsonObject
from saga.protocol import Direction
from saga.testing.invariants import check_invariants
from saga.testing.report import ExplorationReport, Failure, story
from saga.testing.schedule import ALL_FAULTS, FaultKind, Injection, Run, Schedule, run_schedule

W = TypeVar("W")

WorldMaker = Callable[[], W | Awaitable[W] | contextlib.AbstractAsyncContextManager[W]]
"""Builds a fresh world for one run: returns it, a coroutine giving it, or an async context
manager giving it (closed after the run is checked: databases, files)."""
Check = Callable[[W, SagaResult], Awaitable[None] | None]
"""``check(world, result)``: raise (or fail an assert) if the world is wrong for the result."""


async def explore(
    saga: Saga,
    make_world: WorldMaker[W],
    *,
    input: JsonObject | None = None,
    check: Check[W] | None = None,
    max_faults: int = 2,
    max_schedules: int = 1000,
    faults: Iterable[FaultKind] = ALL_FAULTS,
    max_advances: int = 200,
    stop_at_first: bool = True,
    schedules: Iterable[Schedule] | None = None,
    signals: Mapping[str, JsonObject] | None = None,
) -> ExplorationReport:
    """Run ``saga`` under every schedule of up to ``max_faults`` faults; return the report.

    ``make_world()`` builds fresh participants for each run: a list of them, or an object
    whose ``participants`` attribute lists them, with whatever business state they keep. It
    may be async, or an async context manager (``@asynccontextmanager``) that cleans up.
    After each run the saga invariants are checked (it ended completed, compensated or
    visibly stuck; compensations ran in reverse step order; no effect happened twice; every
    effect of a compensated saga was undone; the log is whole and consistent), then
    ``check(world, result)``. ``report.raise_on_failure()`` raises an AssertionError telling
    the first failing schedule. At most ``max_schedules`` run; ``report.not_run`` says how
    many the bound left out. ``schedules=[failure.schedule]`` runs just those schedules, to
    look at one failure again. ``signals`` maps outside events to their payloads: each is
    delivered once (``Coordinator.signal``) as soon as the saga starts, for its wait steps;
    without them a wait step waits out its timeout (in fake time).
    """
    if max_faults < 0 or max_schedules < 1 or max_advances < 1:
        raise ValueError("max_faults must be >= 0, max_schedules and max_advances >= 1")
    kinds = tuple(dict.fromkeys(FaultKind(kind) for kind in faults))
    saga_input: JsonObject = {} if input is None else input
    given = schedules is not None
    queue: deque[Schedule] = deque([()] if schedules is None else map(tuple, schedules))
    queued: set[Schedule] = set(queue)
    endings: Counter[str] = Counter()
    failures: list[Failure] = []
    number = 0
    while queue and number < max_schedules:
        schedule = queue.popleft()
        number += 1
        run, problem = await _run_and_check(
            saga, make_world, schedule, saga_input, check, number, max_advances, signals
        )
        endings[run.result.status.value if run.result and not run.unsettled else "unsettled"] += 1
        if problem is not None:
            text = story(saga.name, saga.version, number, run, problem)
            failures.append(Failure(number=number, schedule=schedule, problem=problem, story=text))
            if stop_at_first:
                break
        if not given and len(schedule) < max_faults:
            for extended in _extensions(run, kinds):
                if extended not in queued:
                    queued.add(extended)
                    queue.append(extended)
    return ExplorationReport(
        saga=saga.name,
        version=saga.version,
        max_faults=max_faults,
        schedules_run=number,
        not_run=len(queue),
        bound_reached=bool(queue) and number >= max_schedules,
        endings=endings,
        failures=tuple(failures),
    )


def explore_sync(saga: Saga, make_world: WorldMaker[W], **options: Any) -> ExplorationReport:
    """``explore`` for code without an event loop (a plain pytest test): ``asyncio.run`` it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(explore(saga, make_world, **options))
    raise RuntimeError("explore_sync cannot run inside an event loop: await explore(...) there")


async def _run_and_check(
    saga: Saga,
    make_world: WorldMaker[W],
    schedule: Schedule,
    saga_input: JsonObject,
    check: Check[W] | None,
    number: int,
    max_advances: int,
    signals: Mapping[str, JsonObject] | None,
) -> tuple[Run, str | None]:
    try:
        async with contextlib.AsyncExitStack() as stack:
            world = await _open_world(make_world(), stack)
            run = await run_schedule(
                saga,
                world,
                schedule,
                input=saga_input,
                saga_id=f"{saga.name}-explored",
                max_advances=max_advances,
                signals=signals,
            )
            problem = _unreached(run) or check_invariants(saga, run)
            if problem is None and check is not None and run.result is not None:
                problem = await _check(check, cast(W, world), run.result)
    except Exception as exc:
        if not schedule:
            raise  # the fault-free run: a usage error, shown as it is
        listed = "; ".join(str(injection) for injection in schedule)
        raise RuntimeError(f"schedule #{number} ({listed}) could not run: {exc!r}") from exc
    return run, problem


async def _open_world(made: object, stack: contextlib.AsyncExitStack) -> object:
    """The world ``make_world()`` gave: awaited if a coroutine, entered if a context manager."""
    if inspect.isawaitable(made):
        made = await made
    if isinstance(made, contextlib.AbstractAsyncContextManager):
        made = await stack.enter_async_context(made)
    return made


async def _check(check: Check[W], world: W, result: SagaResult) -> str | None:
    """Run the user's check; what it raised, as the problem to report."""
    try:
        outcome = check(world, result)
        if inspect.isawaitable(outcome):
            await outcome
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except BaseException as exc:  # pytest.fail() raises a BaseException
        problem = str(exc).strip() or type(exc).__name__
        if isinstance(exc, Exception) and not isinstance(exc, AssertionError):
            problem = f"check raised {type(exc).__name__}: {problem}"
        return problem
    return None


def _unreached(run: Run) -> str | None:
    reached = {item.point for item in run.commands if item.injected is not None}
    for injection in run.schedule:
        if injection.point not in reached:
            return (
                f"{injection} was never reached: the saga took another path than in the run"
                " this schedule grew from (is a request builder or handler not deterministic?)"
            )
    return None


def _extensions(run: Run, kinds: tuple[FaultKind, ...]) -> Iterable[Schedule]:
    """``run``'s schedule plus one fault at a point after its last fault."""
    start = 0
    for i, item in enumerate(run.commands):
        if item.injected is not None:
            start = i + 1
    for item in run.commands[start:]:
        for kind in kinds:
            if kind is FaultKind.REJECT and (
                item.point.direction is not Direction.FORWARD or not item.fresh
            ):
                continue  # a participant that saw a command never says no to it later
            if kind is FaultKind.DELAY_REPLY and not item.overlapped:
                continue  # alone in flight, a late reply is just a reply
            yield (*run.schedule, Injection(item.point, kind))
