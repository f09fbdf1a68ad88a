"""The coordinator: runs the engine for every saga, doing the I/O on its behalf.

For each input (a start, a reply, a timer, a cancel) it asks the engine what follows, appends
that to the log (write-ahead), and only then sends commands and sets timers. At open it
resumes every unfinished saga from the log and re-sends what was in flight, with the same
idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypedDict

from saga import engine, tracing
from saga.clock import Clock, SystemClock
from saga.coordinator.dispatch import (
    DEFAULT_MAX_IN_FLIGHT_PER_SERVICE,
    Dispatcher,
    ServiceLoad,
)
from saga.coordinator.hooks import CoordinatorHooks
from saga.coordinator.registry import Registry
from saga.coordinator.result import SagaChange, SagaResult, SignalResult, result_of
from saga.coordinator.signals import signal_handler
from saga.coordinator.starts import start_handler
from saga.coordinator.timers import TimerWheel
from saga.coordinator.writer import GroupWriter, WriteHealth
from saga.definition import Saga
from saga.engine import Action, Preview, SagaState
from saga.engine.payloads import (
    SagaResumed,
    SagaStarted,
    SagaStuck,
    StepFailed,
    new_event,
    payload_of,
)
from saga.errors import (
    ConcurrencyError,
    FencedError,
    InvalidStartError,
    ProtocolError,
    SagaConflictError,
    SagaNotFoundError,
    StateError,
    TransportError,
)
from saga.events import Event, EventType, Health, JsonObject, NewEvent, SagaStatus
from saga.log.base import Append, NewSaga, SagaLog, SagaRecord
from saga.log.ownership import DEFAULT_LEASE_MS, Claim, Load
from saga.logging_setup import audit, saga_context
from saga.names import NAME_RULE, SAGA_ID_RULE, check_event_id, is_name, is_saga_id
from saga.protocol import MAX_PAYLOAD_BYTES, Command, Direction, Outcome, Reply, encode_json
from saga.transport.base import Transport

logger = logging.getLogger(__name__)

RECOVER_BATCH = 500
"""Unfinished sagas read and resumed together at open."""
RETRY_AFTER_LOG_ERROR_MS = 1000
"""When the log cannot be written, the saga's decision is dropped and re-made this much later."""
BALANCE_SLACK = 16
"""Sagas a coordinator may own above its fair share before it hands the surplus back."""
BALANCE_AFTER_TICKS = 3
"""Lease renewals in a row a surplus must last before it is handed back."""
WATCH_INTERVAL_S = 0.25
"""How often ``wait`` reads the log for a saga another coordinator drives."""


def default_name() -> str:
    """A coordinator's name unless given: ``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _incarnation(name: str) -> str:
    """A coordinator id: the name and a random part, new at every join."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass
class _Active:
    """A saga this coordinator is driving: its state and the lock serialising its inputs."""

    defn: Saga
    state: SagaState
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stale: bool = False
    """The in-memory state ran ahead of the log (a write failed): rebuild it from the log."""
    waiters: list[asyncio.Future[SagaResult]] = field(default_factory=list)


def saga_start(defn: Saga, saga_input: JsonObject, saga_id: str, now_ms: int) -> NewSaga:
    """The saga row and first event that start ``defn``; any coordinator resumes it from there."""
    deadline = defn.deadline_ms
    started = new_event(
        SagaStarted(
            name=defn.name,
            version=defn.version,
            input=saga_input,
            deadline_at_ms=None if deadline is None else now_ms + deadline,
        ),
        now_ms,
    )
    return NewSaga(
        saga_id=saga_id, name=defn.name, version=defn.version, input=saga_input, started=started
    )


class _Row(TypedDict):
    status: SagaStatus
    current_step: str | None
    health: Health | None
    attempt: int | None
    waiting_for: str | None
    due_ms: int | None


def _row_of(state: SagaState) -> _Row:
    """What the saga table keeps of ``state`` beside its events (``Append`` and ``NewSaga``
    take these fields): status, current step, health, attempt, what the saga waits for (its
    first waiting wait step's event) and its earliest accepted-step or wait deadline."""
    pointer = state.pointer
    pointers = state.pointers.values()  # in the order started: the first wait is first
    waiting_for = next((p.event for p in pointers if p.phase is engine.Phase.AWAITING), None)
    due = (engine.Phase.ACCEPTED, engine.Phase.AWAITING)
    deadlines = [
        p.timeout_at_ms for p in pointers if p.phase in due and p.timeout_at_ms is not None
    ]
    return {
        "status": state.status,
        "current_step": pointer.step if pointer else None,
        "health": engine.health(state),
        "attempt": pointer.attempts if pointer else None,
        "waiting_for": waiting_for,
        "due_ms": min(deadlines, default=None),
    }


def _was_accepted(state: SagaState, command: Command) -> bool:
    """The command's step had been accepted as long-running (a reply now is a completion)."""
    progress = state.steps.get(command.step)
    return command.direction is Direction.FORWARD and progress is not None and progress.accepted


def _signal_result(state: SagaState, event: str, event_id: str, *, recorded: bool) -> SignalResult:
    taken = next((s.step for s in state.signals if s.event == event and s.id == event_id), None)
    return SignalResult(
        saga_id=state.saga_id,
        event=event,
        id=event_id,
        recorded=recorded,
        step=taken,
        status=state.status,
    )


def _check_same_start(existing: SagaRecord, new: NewSaga, *, version_given: bool) -> None:
    """A repeated start must repeat the first one; SagaConflictError names what differs."""
    differences = []
    if existing.name != new.name:
        differences.append("name")
    elif version_given and existing.version != new.version:
        differences.append("version")
    if _canonical(existing.input) != _canonical(new.input):
        differences.append("input")
    if differences:
        raise SagaConflictError(
            f"saga id {new.saga_id!r} is already used by saga {existing.name!r}"
            f" v{existing.version} with another {' and '.join(differences)}",
            saga_id=new.saga_id,
            differences=tuple(differences),
        )


def _canonical(value: JsonObject) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _resumed(reason: str, now_ms: int) -> Callable[[SagaState], list[NewEvent]]:
    """A system resume (not an operator's): clears stuck once its cause is gone."""

    def make(state: SagaState) -> list[NewEvent]:
        event = new_event(SagaResumed(reason=reason), now_ms)
        engine.apply(state, event)
        return [event]

    return make


class SagaHandle:
    """A started saga: its id, and a way to await its outcome (``start`` returns one)."""

    def __init__(self, coordinator: Coordinator, saga_id: str, created: bool) -> None:
        self._coordinator = coordinator
        self.saga_id = saga_id
        self.created = created
        """False when a saga with this id existed already and nothing new was started."""

    async def result(self) -> SagaResult:
        """Wait until the saga is completed, compensated or stuck (bound it: asyncio.timeout)."""
        return await self._coordinator.wait(self.saga_id)

    async def status(self) -> SagaResult:
        return await self._coordinator.get(self.saga_id)

    def __repr__(self) -> str:
        return f"SagaHandle({self.saga_id!r})"


class Coordinator:
    """Drives sagas to completion or compensation: ``Coordinator(log, transport, sagas=[...])``.

    Use as ``async with Coordinator(...) as coordinator:``, or call ``open()`` and ``close()``.

    ``max_in_flight_per_service`` bounds the commands sent and unanswered per service (the
    rest wait in the coordinator, their step timeouts not started; see
    ``saga.coordinator.dispatch``); None sends everything at once. With
    ``adaptive_limit`` the bound moves between 1 and that maximum with the services' latency.
    """

    def __init__(
        self,
        log: SagaLog,
        transport: Transport,
        *,
        sagas: Sequence[Saga],
        clock: Clock | None = None,
        max_input_bytes: int = MAX_PAYLOAD_BYTES,
        max_batch: int = 512,
        hooks: CoordinatorHooks | None = None,
        max_in_flight_per_service: int | None = DEFAULT_MAX_IN_FLIGHT_PER_SERVICE,
        adaptive_limit: bool = True,
        name: str | None = None,
        lease_ms: int = DEFAULT_LEASE_MS,
        api_url: str | None = None,
    ) -> None:
        self.log = log
        self.transport = transport
        self.registry = Registry(sagas)
        self.clock: Clock = clock or SystemClock()
        self.max_input_bytes = max_input_bytes
        self._writer = GroupWriter(log, max_batch=max_batch)
        self._timers = TimerWheel(self.clock, self._on_timer)
        self._dispatcher = Dispatcher(
            self.clock,
            self._transmit,
            self._claim,
            limit=max_in_flight_per_service,
            adaptive=adaptive_limit,
        )
        self._active: dict[str, _Active] = {}
        self._tracing = tracing.CoordinatorTracing()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[Callable[[SagaChange], None]] = []
        self._open = False
        # Test seams (crash tests); None in production, where no hook is ever called.
        self._hooks = hooks
        # Ownership (saga.log.ownership): the sagas this coordinator owns, with the epoch of
        # each claim, which every write of theirs carries.
        if lease_ms < 100:
            raise ValueError(f"lease_ms must be at least 100, not {lease_ms}")
        self.name = name or default_name()
        self.coordinator_id = _incarnation(self.name)
        self.lease_ms = lease_ms
        self.api_url = api_url
        self._owned: dict[str, int] = {}
        self._lease_task: asyncio.Task[None] | None = None
        self._balance_task: asyncio.Task[None] | None = None
        self._balance_due = asyncio.Event()
        self._generation = 0
        """Raised each time the lease is lost: work begun before it is dropped, not applied."""
        self._reconcile = False
        self._surplus_ticks = 0
        self.fenced_writes = 0
        """Writes refused because another coordinator had taken the saga over."""
        self.claimed = 0
        """Sagas claimed (taken over from a dead coordinator, handed back, or taken for an
        operator's action) since open."""
        self.released = 0
        """Sagas handed back for balance since open."""
        self.leases_lost = 0
        """Times this coordinator found its lease expired (it then let every saga go)."""

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the log and transport, join the coordinators, then claim and resume a share
        of the unfinished sagas (all of them when this coordinator is alone)."""
        await self.log.open()
        try:
            await self.log.ownership.join(
                self.coordinator_id, self.name, self.lease_ms, self.api_url
            )
        except BaseException:
            await self.log.close()
            raise
        self._writer.start()
        self._timers.start()
        await self.transport.open(self._on_reply)
        self._open = True
        await self.recover()
        self._lease_task = asyncio.create_task(self._keep_lease(), name="saga-lease")
        self._balance_task = asyncio.create_task(self._keep_balance(), name="saga-balance")
        try:  # starts over the transport (NATS saga.start), once recovered
            await self.transport.serve_starts(start_handler(self))
            await self.transport.serve_signals(signal_handler(self))
            await self.transport.serve_completions(self._on_completion)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop taking inputs, finish what is being written, and disconnect."""
        if not self._open:
            return
        self._open = False
        await self.transport.stop_starts()  # first: a start answered now is still driven
        for task in (self._lease_task, self._balance_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lease_task = self._balance_task = None
        await self._dispatcher.close()  # first: nothing queued is sent to a closing transport
        await self.transport.close()
        await self._timers.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._writer.stop()
        for active in self._active.values():
            for waiter in active.waiters:
                waiter.cancel()
        self._active.clear()
        self._owned.clear()
        self._tracing.close()
        # Nothing more is written: hand every saga back at once, for the others to claim.
        try:
            released = await self.log.ownership.leave(self.coordinator_id)
            if released:
                logger.info("handed back %d unfinished sagas", released)
        except Exception as exc:
            logger.warning("could not hand back sagas (its lease will expire): %s", exc)
        await self.log.close()

    async def __aenter__(self) -> Coordinator:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the public API --------------------------------------------------------------------

    async def start(
        self,
        saga: Saga | str,
        input: JsonObject | None = None,
        *,
        saga_id: str | None = None,
        version: int | None = None,
    ) -> SagaHandle:
        """Start a saga and return its handle at once.

        With a caller-chosen ``saga_id`` (see ``saga.names`` for its grammar) the start is
        idempotent: if that id exists with the same saga name and input, nothing is started
        and the existing saga's handle is returned (``created`` False). If it exists with
        another name, input or (when given) version, nothing is started and
        SagaConflictError names what differs.

        A bad id, an input that is not a JSON object or is over ``max_input_bytes``, or a
        version that is not an integer raises InvalidStartError (a ProtocolError) naming the
        argument, before anything is written; an unknown name or version, UnknownSagaError.
        """
        saga_input = self._check_start(input, saga_id, version)
        defn = self.registry.resolve(saga, version)
        now = self.clock.now_ms()
        new = saga_start(defn, saga_input, saga_id or uuid.uuid4().hex, now)
        saga_id = new.saga_id
        # The first decision (the first step's StepSent, usually) is made before the saga is
        # written and stored with it in one commit; it is thrown away if the id is taken.
        state = engine.new_state(saga_id, new.started)
        first = engine.decide(defn, state, now).events
        new = replace(new, events=first, owner=self.coordinator_id, **_row_of(state))
        record, created = await self._writer.create(new)
        if not created:
            _check_same_start(record, new, version_given=version is not None)
            return SagaHandle(self, saga_id, created)
        self._owned[saga_id] = new.epoch
        self._active[saga_id] = _Active(defn=defn, state=state)
        self._notify(state, new.all_events)
        if self._hooks is not None and first:
            self._hooks.after_record(first)
        # Decides nothing new; sends the command now in flight and sets its timers.
        await self._advance(saga_id, resend=True)
        return SagaHandle(self, saga_id, created)

    def _check_start(self, input: object, saga_id: object, version: object) -> JsonObject:
        """The input as it will be stored, or InvalidStartError naming the bad argument.

        The one place a start is validated: the HTTP API passes its JSON body's fields here
        unchecked and only maps the error to a status.
        """
        saga_input = {} if input is None else input
        if not isinstance(saga_input, dict):
            raise InvalidStartError(
                f"saga input must be a JSON object, not {type(input).__name__}", argument="input"
            )
        if saga_id is not None and not is_saga_id(saga_id):
            shown = str(saga_id)[:60] if isinstance(saga_id, str) else saga_id
            raise InvalidStartError(
                f"saga_id {shown!r} is invalid: saga ids are {SAGA_ID_RULE}", argument="saga_id"
            )
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise InvalidStartError(
                f"version must be an integer, not {type(version).__name__}", argument="version"
            )
        try:
            # Measured against our own limit below, so the size is known to the caller.
            body = encode_json(saga_input, sys.maxsize)
        except ProtocolError as exc:
            raise InvalidStartError(exc.message, argument="input") from exc
        if len(body) > self.max_input_bytes:
            raise InvalidStartError(
                f"input is {len(body)} bytes, over the {self.max_input_bytes} byte limit",
                argument="input",
                size_bytes=len(body),
                limit_bytes=self.max_input_bytes,
            )
        # Run on the JSON form (tuples become lists, keys strings): it is what the log keeps
        # and what recovery replays, so request builders see the same input either way.
        stored: JsonObject = json.loads(body)
        return stored

    async def execute(
        self,
        saga: Saga | str,
        input: JsonObject | None = None,
        *,
        saga_id: str | None = None,
    ) -> SagaResult:
        """Start a saga and wait for its outcome."""
        handle = await self.start(saga, input, saga_id=saga_id)
        return await handle.result()

    async def _watch(self, saga_id: str) -> SagaResult:
        """The saga's result once the log says it is final or stuck (its row is read every
        WATCH_INTERVAL_S; its events once, at the end)."""
        while True:
            record = await self.log.get(saga_id)
            if record is None:
                raise SagaNotFoundError(f"no saga {saga_id!r}", saga_id=saga_id)
            if record.status.is_final or record.status is SagaStatus.STUCK:
                return await self.get(saga_id)
            active = self._active.get(saga_id)
            if active is not None:  # claimed here meanwhile
                return await self.wait(saga_id)
            await asyncio.sleep(WATCH_INTERVAL_S)

    def handle(self, saga_id: str) -> SagaHandle:
        return SagaHandle(self, saga_id, created=False)

    async def get(self, saga_id: str) -> SagaResult:
        """The saga's current status and results, from the log."""
        events = await self.log.events(saga_id)
        if not events:
            raise SagaNotFoundError(f"no saga {saga_id!r}", saga_id=saga_id)
        return result_of(engine.replay(events))

    async def wait(self, saga_id: str) -> SagaResult:
        """Wait until the saga is completed, compensated or stuck (driven here or by another
        coordinator: then the log is read every WATCH_INTERVAL_S)."""
        active = self._active.get(saga_id)
        if active is None:
            return await self._watch(saga_id)
        # Even if its in-memory state looks final, the write may still be under way: wait for
        # _settle, which runs only once the end is in the log.
        future: asyncio.Future[SagaResult] = asyncio.get_running_loop().create_future()
        active.waiters.append(future)
        return await future

    async def act(
        self,
        saga_id: str,
        action: Action | str,
        *,
        actor: str,
        reason: str,
        result: JsonObject | None = None,
        dry_run: bool = False,
    ) -> Preview:
        """Carry out an operator action, recorded in the saga's log as an audit entry.

        Returns what the action does (events, commands, compensations still to run, in
        order). With ``dry_run`` nothing is written or sent. Raises SagaNotFoundError for an
        unknown id and StateError when the action does not fit the saga's state.
        """
        try:
            action = Action(action)
        except ValueError as exc:
            raise StateError(f"unknown action {action!r}", saga_id=saga_id) from exc
        with tracing.operator_span(saga_id, action.value, actor, dry_run=dry_run):
            preview = await self._act(
                saga_id, action, actor=actor, reason=reason, result=result, dry_run=dry_run
            )
        audit(action.value, saga_id, actor=actor, reason=reason, dry_run=dry_run)
        return preview

    async def _act(
        self, saga_id: str, action: Action, *, actor: str, reason: str,
        result: JsonObject | None, dry_run: bool,
    ) -> Preview:  # fmt: skip
        now = self.clock.now_ms()
        if dry_run:
            # A preview changes nothing, so the saga stays with whoever owns it.
            defn, state = await self._current(saga_id)
            return engine.preview(
                defn, state, action, actor=actor, reason=reason, now_ms=now, result=result
            )
        active = await self._activate(saga_id)
        outcome: list[Preview] = []

        def make(state: SagaState) -> list[NewEvent]:
            outcome.append(
                engine.preview(
                    active.defn, state, action, actor=actor, reason=reason, now_ms=now,
                    result=result,
                )
            )  # fmt: skip
            return engine.on_action(
                active.defn, state, action, actor=actor, reason=reason, now_ms=now, result=result
            )

        await self._advance(saga_id, make)
        if not outcome:
            raise StateError("the saga changed while the action was being taken; try again")
        return outcome[0]

    async def cancel(self, saga_id: str, reason: str, *, actor: str = "api") -> None:
        """Compensate a saga that has not passed its pivot; StateError otherwise."""
        await self.act(saga_id, Action.CANCEL, actor=actor, reason=reason)

    async def resume(self, saga_id: str, reason: str, *, actor: str = "api") -> None:
        """Retry a stuck saga's current step now, with a fresh attempt budget."""
        await self.act(saga_id, Action.RETRY, actor=actor, reason=reason)

    def add_listener(self, listener: Callable[[SagaChange], None]) -> None:
        """Call ``listener`` after every change recorded in the log (keep it fast)."""
        self._listeners.append(listener)

    @property
    def active_count(self) -> int:
        """Sagas driven here now."""
        return len(self._active)

    @property
    def owned_count(self) -> int:
        """Unfinished sagas this coordinator owns: those it drives, and stuck ones."""
        return len(self._owned)

    def service_load(self) -> list[ServiceLoad]:
        """Per service: commands waiting for a slot, in flight, and the current limit."""
        return self._dispatcher.load()

    @property
    def log_writes(self) -> WriteHealth:
        """Whether the log accepted this coordinator's last write (``/readyz`` reports it)."""
        return self._writer.health

    # -- recovery --------------------------------------------------------------------------

    async def recover(self) -> int:
        """Claim and resume this coordinator's share of the unfinished sagas: all of them
        when it is alone (always on SQLite). Returns how many are being driven now.

        Runs at open, and again every lease renewal (the share is recomputed from how many
        sagas are unfinished and how many coordinators live): so sagas of a coordinator
        whose lease expired, or that handed them back, are taken over.
        """
        before = len(self._active)
        await self._balance()
        resumed = len(self._active) - before
        if resumed > 0:
            logger.info("resumed %d unfinished sagas", resumed)
        return max(resumed, 0)

    async def _balance(self) -> None:
        """Claim up to this coordinator's fair share, or hand back a surplus."""
        ownership = self.log.ownership
        generation = self._generation
        if self._reconcile:
            # A claim failed with its outcome unknown: adopt whatever it took.
            mine = await ownership.owned(self.coordinator_id)
            self._reconcile = False
            await self._resume([c for c in mine if c.saga_id not in self._owned], generation)
        census = await ownership.census()
        if ownership.exclusive:
            share = census.unfinished
        else:
            share = math.ceil(census.unfinished / max(census.live, 1))
        owned = len(self._owned)
        surplus = owned - share
        # A surplus of short sagas ends on its own before the others could claim it; moving
        # it costs re-sends and a wait of up to a tick. Only one that lasts several ticks
        # (long sagas, a coordinator joining) is handed back.
        if surplus > max(BALANCE_SLACK, share // 4):
            self._surplus_ticks += 1
            if self._surplus_ticks >= BALANCE_AFTER_TICKS:
                self._surplus_ticks = 0
                await self._hand_back(surplus)
            return
        self._surplus_ticks = 0
        want = share - owned
        while want > 0:
            try:
                claims = await ownership.claim(self.coordinator_id, min(want, RECOVER_BATCH))
            except Exception:
                self._reconcile = True
                raise
            if not claims:
                return
            if generation != self._generation:
                return  # claimed under a lease since lost: its sagas are claimable again
            self.claimed += len(claims)
            want -= len(claims)
            await self._resume(claims, generation)

    async def _resume(self, claims: Sequence[Claim], generation: int) -> None:
        """Drive these newly claimed sagas: read their events in batches and resume each
        batch at once (what they re-send goes out together, what they record shares group
        commits). Stops if the lease is lost meanwhile (``generation`` is then stale)."""
        if generation != self._generation:
            return
        for claim in claims:
            self._owned[claim.saga_id] = claim.epoch
        ids = [c.saga_id for c in claims]
        for start in range(0, len(ids), RECOVER_BATCH):
            if generation != self._generation:
                return  # every saga was let go with the lease
            batch = ids[start : start + RECOVER_BATCH]
            try:
                events = await self.log.events_many(batch)
            except Exception:
                logger.exception("could not read %d claimed sagas from the log", len(batch))
                self._let_go_many(batch, reason=None)
                try:
                    await self.log.ownership.release(self.coordinator_id, batch)
                except Exception:
                    self._reconcile = True  # still ours in the log: adopt them next time
                continue
            outcomes = await asyncio.gather(
                *(self._recover_one(saga_id, events[saga_id]) for saga_id in batch),
                return_exceptions=True,
            )
            for saga_id, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    logger.error("could not recover saga %s", saga_id, exc_info=outcome)

    async def _hand_back(self, count: int) -> None:
        """Let ``count`` sagas go for other coordinators to claim: the newest first, each
        under its lock so that none is half-way through a write."""
        chosen = sorted(
            self._active.items(), key=lambda item: item[1].state.started_ms, reverse=True
        )[:count]
        ids = []
        for saga_id, active in chosen:
            async with active.lock:
                if self._active.get(saga_id) is active:
                    self._let_go(saga_id)
                    ids.append(saga_id)
        try:
            released = await self.log.ownership.release(self.coordinator_id, ids)
        except Exception:
            self._reconcile = True  # still ours in the log: adopt them next time
            raise
        self.released += released
        logger.info("handed back %d sagas for balance", released)

    def _let_go(self, saga_id: str) -> None:
        """Stop driving a saga that is (or is about to be) another coordinator's: forget its
        state, timers and queued commands; whoever waits on it reads the log instead."""
        self._owned.pop(saga_id, None)
        active = self._active.pop(saga_id, None)
        self._dispatcher.forget(saga_id)
        self._timers.schedule(saga_id, None)
        self._tracing.settled(saga_id, "handed_over")
        if active is None:
            return
        for waiter in active.waiters:
            if not waiter.done():
                self._spawn(self._forward(saga_id, waiter))
        active.waiters.clear()

    def _let_go_many(self, saga_ids: Sequence[str], *, reason: str | None) -> None:
        for saga_id in saga_ids:
            self._let_go(saga_id)
        if reason is not None and saga_ids:
            logger.warning("let %d sagas go: %s", len(saga_ids), reason)

    async def _forward(self, saga_id: str, waiter: asyncio.Future[SagaResult]) -> None:
        try:
            result = await self._watch(saga_id)
        except Exception as exc:
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if not waiter.done():
            waiter.set_result(result)

    def _load(self) -> Load:
        in_flight = sum(service.in_flight for service in self._dispatcher.load())
        return Load(sagas=len(self._owned), in_flight=in_flight, fenced_writes=self.fenced_writes)

    async def _keep_lease(self) -> None:
        """Renew the lease every quarter of it, and have the balance run after each renewal
        (in its own task: a long take-over never delays a renewal). A lease found expired
        (the process was paused or cut off) means every saga may have been taken over: let
        them all go, join again under a new id, and claim afresh."""
        interval = self.lease_ms / 4000
        renewed_at = time.monotonic()
        failures = 0
        while True:
            await asyncio.sleep(interval)
            ownership = self.log.ownership
            try:
                # Bounded: a renewal that hangs (a dead connection, retries) must not keep
                # this loop from noticing that the lease ran out.
                alive = await asyncio.wait_for(
                    ownership.renew(self.coordinator_id, self.lease_ms, self._load()),
                    timeout=2 * interval,
                )
            except Exception as exc:
                failures += 1
                if ownership.exclusive:
                    # Alone on the log (SQLite), nobody can take the sagas over: keep them.
                    # (A log that refuses writes is reported by the group writer.)
                    logger.debug("could not renew the lease: %s", exc)
                    continue
                if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th, 8th, ... failure
                    logger.warning("could not renew the lease (%d tries): %s", failures, exc)
                if time.monotonic() - renewed_at < self.lease_ms / 1000:
                    continue
                alive = False
            else:
                failures = 0
            if not alive:
                await self._lost_lease()
                continue
            renewed_at = time.monotonic()
            self._balance_due.set()

    async def _keep_balance(self) -> None:
        while True:
            await self._balance_due.wait()
            self._balance_due.clear()
            try:
                await self._balance()
            except Exception as exc:
                logger.warning("could not claim or hand back sagas: %s", exc)

    async def _lost_lease(self) -> None:
        self.leases_lost += 1
        self._generation += 1
        owned = list(self._owned)
        self._let_go_many(owned, reason="this coordinator's lease expired")
        old = self.coordinator_id
        self.coordinator_id = _incarnation(self.name)
        try:
            await self.log.ownership.join(
                self.coordinator_id, self.name, self.lease_ms, self.api_url
            )
        except Exception as exc:
            self.coordinator_id = old  # try again at the next tick: renew fails, so rejoin
            logger.warning("lost the lease and could not join again yet: %s", exc)
            return
        logger.warning(
            "lease of %s had expired: rejoined as %s; its sagas are claimed afresh",
            old, self.coordinator_id,
        )  # fmt: skip

    async def _recover_one(self, saga_id: str, events: list[Event] | None = None) -> bool:
        if saga_id in self._active:
            return False
        if events is None:
            events = await self.log.events(saga_id)
        state = engine.replay(events)
        defn = self.registry.get(state.name, state.version)
        now = self.clock.now_ms()
        if defn is None:
            if state.stuck is None:
                reason = f"definition {state.name!r} version {state.version} is not registered"
                event = new_event(SagaStuck(code="unknown_version", reason=reason), now)
                await self._writer.write(
                    Append(
                        saga_id=saga_id,
                        expected_seq=state.seq,
                        events=[event],
                        status=SagaStatus.STUCK,
                        current_step=state.pointer.step if state.pointer else None,
                        health=Health.STUCK,
                        epoch=self._owned.get(saga_id),
                    )
                )
                engine.apply(state, event)
                self._notify(state, [event])
                logger.warning("saga %s is stuck: %s", saga_id, reason)
            return False
        if state.stuck is not None and state.stuck.get("code") != "unknown_version":
            return False  # waits for an operator; resume() activates it
        self._active[saga_id] = _Active(defn=defn, state=state)
        make = None
        if state.stuck is not None:
            make = _resumed("definition version is registered again", now)
        await self._advance(saga_id, make, resend=True)
        return True

    async def _known(self, saga_id: str) -> tuple[Saga, SagaState]:
        """The saga's definition and state, finished or not: in memory if driven here, else
        from the log. SagaNotFoundError, or StateError if its definition is unknown."""
        return await self._read(saga_id, refuse_finished=False)

    async def _current(self, saga_id: str) -> tuple[Saga, SagaState]:
        """The saga's definition and state: in memory if driven here, else from the log.
        SagaNotFoundError, or StateError if it is finished or its definition unknown."""
        return await self._read(saga_id, refuse_finished=True)

    async def _read(self, saga_id: str, *, refuse_finished: bool) -> tuple[Saga, SagaState]:
        active = self._active.get(saga_id)
        if active is not None:
            async with active.lock:
                return active.defn, active.state.copy()
        events = await self.log.events(saga_id)
        if not events:
            raise SagaNotFoundError(f"no saga {saga_id!r}", saga_id=saga_id)
        state = engine.replay(events)
        if refuse_finished and state.is_final:
            raise StateError(f"saga is already {state.status.value}", saga_id=saga_id)
        defn = self.registry.get(state.name, state.version)
        if defn is None:
            raise StateError(
                f"definition {state.name!r} version {state.version} is not registered",
                saga_id=saga_id,
            )
        return defn, state

    async def _activate(self, saga_id: str) -> _Active:
        """The saga, driven here: an operator acting through this coordinator takes it over
        from whichever coordinator owns it (whose next write for it is then fenced)."""
        active = self._active.get(saga_id)
        if active is not None:
            return active
        defn, _ = await self._current(saga_id)  # not found, finished: nothing is taken
        if saga_id not in self._owned:
            claim = await self.log.ownership.take(self.coordinator_id, saga_id)
            if claim is None:
                raise StateError("the saga finished meanwhile", saga_id=saga_id)
            self.claimed += 1
            self._owned[saga_id] = claim.epoch
        active = self._active.get(saga_id)
        if active is not None:
            return active
        # Read after the claim: nothing can be added to its log now but by us.
        state = engine.replay(await self.log.events(saga_id))
        if state.is_final:
            self._owned.pop(saga_id, None)
            raise StateError(f"saga is already {state.status.value}", saga_id=saga_id)
        if state.stuck is not None:
            return self._active.setdefault(saga_id, _Active(defn=defn, state=state))
        # Taken mid-way from a live or dead owner: drive it as a take-over does first (re-send
        # what is in flight, set its timers), since the old owner gets the replies no more.
        self._active.setdefault(saga_id, _Active(defn=defn, state=state))
        await self._advance(saga_id, resend=True)
        active = self._active.get(saga_id)
        if active is None:
            raise StateError("the saga moved on while it was taken over; try again")
        return active

    # -- the loop of one saga --------------------------------------------------------------

    async def _advance(
        self,
        saga_id: str,
        make_events: Callable[[SagaState], list[NewEvent]] | None = None,
        *,
        resend: bool = False,
    ) -> None:
        """Apply an input (if any), decide, append, then send and schedule."""
        active = self._active.get(saga_id)
        if active is None:
            return
        hooks = self._hooks
        async with active.lock:
            if self._active.get(saga_id) is not active:
                return
            now = self.clock.now_ms()
            if active.stale:
                try:
                    active.state = engine.replay(await self.log.events(saga_id))
                except Exception:
                    logger.exception("could not reload saga %s from the log", saga_id)
                    self._timers.schedule(saga_id, now + RETRY_AFTER_LOG_ERROR_MS)
                    return
                active.stale = False
            # Decide on the live state (no copy on the hot path); if the decision cannot be
            # recorded, the state is marked stale and rebuilt from the log next time.
            work = active.state
            expected_seq = work.seq
            try:
                events = make_events(work) if make_events is not None else []
                decision = engine.decide(active.defn, work, now)
            except BaseException:
                active.stale = work.seq != expected_seq
                raise
            events.extend(decision.events)
            if events:
                append = Append(
                    saga_id=saga_id,
                    expected_seq=expected_seq,
                    events=events,
                    epoch=self._owned.get(saga_id),
                    **_row_of(work),
                )
                try:
                    await self._writer.write(append)
                except FencedError:
                    # Another coordinator claimed it (this one's lease expired, or an
                    # operator acted on it elsewhere): nothing of this decision is stored.
                    self.fenced_writes += 1
                    logger.warning("saga %s was taken over by another coordinator", saga_id)
                    self._let_go(saga_id)
                    return
                except ConcurrencyError:
                    logger.warning("saga %s was written by someone else; reloading it", saga_id)
                    self._active.pop(saga_id, None)
                    self._dispatcher.forget(saga_id)
                    self._spawn(self._reload(saga_id))
                    return
                except BaseException as exc:
                    active.stale = True
                    if not isinstance(exc, Exception):
                        raise
                    # The group writer logs the log's failures, throttled (one per commit).
                    logger.debug("could not record the next step of saga %s: %s", saga_id, exc)
                    self._timers.schedule(saga_id, now + RETRY_AFTER_LOG_ERROR_MS)
                    return
            if events:
                self._release_timeouts(saga_id, events)
                self._notify(work, events)
            if hooks is not None and events:
                hooks.after_record(events)
            if work.needs_attention and any(e.type is EventType.STEP_FAILED for e in events):
                assert work.pointer is not None
                logger.warning(
                    "saga %s needs attention: step %r failed %d times after the pivot (%s)",
                    saga_id, work.pointer.step, work.pointer.attempts, work.pointer.last_error,
                )  # fmt: skip
            commands = list(decision.commands)
            if resend:
                sending = {(c.step, c.direction, c.attempt) for c in commands}
                commands.extend(
                    c
                    for c in engine.in_flight(work)
                    if (c.step, c.direction, c.attempt) not in sending
                )
            for command in commands:
                if not await self._send(active, command):
                    engine.hold(work, command)
            # The decision's wake-up, unless a held command's timeout has not started.
            self._timers.schedule(saga_id, engine.wake_at(work))
            if work.is_final or work.stuck is not None:
                self._settle(saga_id, active)

    def _notify(self, state: SagaState, events: list[NewEvent]) -> None:
        if not self._listeners:
            return
        change = SagaChange(
            saga_id=state.saga_id,
            name=state.name,
            version=state.version,
            status=state.status,
            health=engine.health(state),
            current_step=state.pointer.step if state.pointer else None,
            started_ms=state.started_ms,
            seq=state.seq,
            events=tuple(events),
        )
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                logger.exception("saga change listener failed")

    def _settle(self, saga_id: str, active: _Active) -> None:
        result = result_of(active.state)
        for waiter in active.waiters:
            if not waiter.done():
                waiter.set_result(result)
        active.waiters.clear()
        self._active.pop(saga_id, None)
        if result.status is not SagaStatus.STUCK:
            self._owned.pop(saga_id, None)  # a stuck saga stays ours until an operator acts
        self._dispatcher.forget(saga_id)
        self._timers.schedule(saga_id, None)
        self._tracing.settled(saga_id, result.status.value)
        if result.status is SagaStatus.STUCK:
            logger.warning("saga %s is stuck: %s", saga_id, (result.stuck or {}).get("reason"))

    async def _reload(self, saga_id: str) -> None:
        await self._recover_one(saga_id)

    async def _send(self, active: _Active, command: Command) -> bool:
        """Send a recorded command through flow control: True if sent, False if it waits
        (behind the commands of sagas started before this one)."""
        defn = active.defn
        timeout_ms = defn.step(command.step).timeout_ms
        priority = (active.state.started_ms, command.saga_id)
        return await self._dispatcher.submit(command, timeout_ms, priority)

    async def _transmit(self, command: Command) -> None:
        """Hand a command to the transport (the dispatcher calls this when its turn comes)."""
        direction = command.direction.value
        try:
            with (
                saga_context(command.saga_id, command.step, direction, command.attempt),
                self._tracing.sending(
                    command.saga_id, command.saga_name, command.step, direction, command.attempt
                ),
            ):
                await self.transport.send(command)
        except (TransportError, ProtocolError) as exc:
            # Recorded as sent already: the step's timeout makes it a retry later.
            logger.warning(
                "could not send %s for saga %s: %s", command.subject, command.saga_id, exc
            )
            return
        if self._hooks is not None:
            self._hooks.after_send(command)

    def _claim(self, command: Command, timeout_ms: int) -> bool:
        """A queued command's turn came: start its timeout, or say it is no longer wanted.

        Runs without awaiting, so it sees the saga between two steps of its ``_advance``; a
        command matches the pointer only once its StepSent is in the log.
        """
        active = self._active.get(command.saga_id)
        if active is None or active.stale:
            return False
        if not engine.dispatched(active.state, command, self.clock.now_ms(), timeout_ms):
            return False
        self._timers.schedule(command.saga_id, engine.wake_at(active.state))
        return True

    def _release_timeouts(self, saga_id: str, events: list[NewEvent]) -> None:
        """Free the slot of every attempt these (recorded) events time out."""
        for event in events:
            if event.type is not EventType.STEP_FAILED:
                continue
            failed = payload_of(event)
            if isinstance(failed, StepFailed) and (failed.error or {}).get("code") == "timeout":
                key = (saga_id, failed.step, failed.direction, failed.attempt)
                self._dispatcher.on_timeout(key)
                self._tracing.answered(
                    (saga_id, failed.step, failed.direction.value, failed.attempt), "timeout"
                )

    # -- inputs from the transport and the timers -----------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("saga task failed", exc_info=task.exception())

    async def _on_reply(self, command: Command, reply: Reply) -> None:
        self._dispatcher.on_reply(command)
        direction = command.direction.value
        self._tracing.answered(
            (command.saga_id, command.step, direction, command.attempt), reply.outcome.value
        )
        active = self._active.get(command.saga_id)
        if active is None:
            logger.debug("reply for saga %s, which is not active here", command.saga_id)
            return
        if self._hooks is not None:
            self._hooks.on_reply(command)
        now = self.clock.now_ms()
        defn = active.defn

        def make(state: SagaState) -> list[NewEvent]:
            events = engine.on_reply(defn, state, command, reply, now)
            if (
                not events
                and reply.outcome is not Outcome.ACCEPTED
                and _was_accepted(state, command)
            ):
                logger.warning(
                    "saga %s: refused the %s completion of step %r: the saga has moved on (%s)",
                    command.saga_id, reply.outcome.value, command.step, state.status.value,
                )  # fmt: skip
            return events

        # The task copies the context: its log lines name the saga, step and attempt.
        with saga_context(command.saga_id, command.step, direction, command.attempt):
            self._spawn(self._advance(command.saga_id, make))

    async def _on_completion(self, saga_id: str, step: str, direction: Direction) -> None:
        """A participant announced that an accepted command of ``step`` completed (or sent a
        heartbeat): if the saga is driven here, ask for the outcome now."""
        active = self._active.get(saga_id)
        if active is None or direction is not Direction.FORWARD:
            return

        def make(state: SagaState) -> list[NewEvent]:
            engine.poll_now(state, step)
            return []

        self._spawn(self._advance(saga_id, make))

    async def signal(
        self,
        saga_id: str,
        event: str,
        *,
        event_id: str,
        payload: JsonObject | None = None,
        sender: str = "api",
    ) -> SignalResult:
        """Deliver the outside event ``event`` (id ``event_id``) to a saga.

        Returns once it is in the saga's log: ``recorded`` is False for a repeat of an id
        already received (nothing changes). Raises SagaNotFoundError, StateError (the saga
        is finished, no step waits for ``event``, or the step already took another event)
        and ProtocolError (a bad name, id or payload). Like an operator action, it moves the
        saga to this coordinator if another owned it.
        """
        if not is_name(event):
            raise ProtocolError(f"event name {str(event)[:60]!r} must be {NAME_RULE}")
        check_event_id(event_id)
        body = {} if payload is None else payload
        if not isinstance(body, dict):
            raise ProtocolError("an event's payload must be a JSON object")
        encode_json(body, self.max_input_bytes)
        defn, state = await self._known(saga_id)
        if any(s.event == event and s.id == event_id for s in state.signals):
            return _signal_result(state, event, event_id, recorded=False)  # a repeat: answered
        if state.is_final:
            raise StateError(f"saga is already {state.status.value}", saga_id=saga_id)
        if not defn.waits_for(event):
            raise StateError(
                f"no step of saga {defn.name!r} v{defn.version} waits for event {event!r}",
                saga_id=saga_id,
            )
        now = self.clock.now_ms()
        await self._activate(saga_id)
        outcome: list[SignalResult] = []

        def make(work: SagaState) -> list[NewEvent]:
            events = engine.on_signal(
                defn, work, event, event_id=event_id, payload=body, sender=sender, now_ms=now
            )
            outcome.append(_signal_result(work, event, event_id, recorded=bool(events)))
            return events

        await self._advance(saga_id, make)
        if not outcome:
            raise StateError("the saga changed while the event was being recorded; try again")
        active = self._active.get(saga_id)
        state = (
            active.state if active is not None else engine.replay(await self.log.events(saga_id))
        )
        return _signal_result(state, event, event_id, recorded=outcome[0].recorded)

    def _on_timer(self, saga_id: str) -> None:
        if saga_id in self._active:
            with saga_context(saga_id):
                self._spawn(self._advance(saga_id))
