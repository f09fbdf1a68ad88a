"""ParticipantCore: a service's saga commands, made idempotent and fenced, independent of transport.

``ParticipantCore.handle`` holds every semantic (dedup, rejection, transient failure, fencing,
long-running commands and their compensation);
the NATS server in ``saga.participant.nats`` and the in-memory transport only carry bytes to it.
This module never imports a transport: the public ``saga.participant.Participant`` adds
``serve()`` on top of it, so the core does not know its server (an import-linter contract
keeps it that way).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from saga import tracing
from saga.clock import Clock, SystemClock
from saga.errors import DefinitionError, ProtocolError, Rejected
from saga.logging_setup import saga_context
from saga.names import NAME_RULE, is_name
from saga.participant.completions import (
    COMPENSATED_FORWARD,
    MAX_RECORDED_RESULT_BYTES,
    Announce,
    CompletingTransaction,
    Completions,
)
from saga.participant.context import Accepted, CommandContext, Handler, JsonObject
from saga.participant.locks import KeyedLocks
from saga.participant.memory import InMemoryIdempotencyStore
from saga.participant.store import Claim, IdempotencyRecord, IdempotencyStore, RecordState
from saga.protocol import (
    MAX_PAYLOAD_BYTES,
    RESULT_TOO_LARGE,
    Command,
    Direction,
    Outcome,
    Reply,
    encode_json,
    idempotency_key,
)

logger = logging.getLogger(__name__)

H = TypeVar("H", bound=Handler)

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_MAX_ERROR_MESSAGE = 2000
FENCED_RESULT: JsonObject = {"fenced": True}
"""The result of a compensation whose forward command never ran here."""
ABANDONED_FORWARD = Reply.failed(
    "forward_abandoned",
    "the forward command's handler died mid-way and its compensation has started;"
    " it will not run again",
)
"""Recorded for a forward command whose effect is unknown when its compensation starts."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What the forward key says about a compensation: answer now, or run with a result."""

    reply: Reply | None = None
    final: bool = True
    forward_result: JsonObject | None = None


class ParticipantCore:
    """One service's saga commands, transport-free: register handlers, then ``handle`` them.

    Users build ``saga.participant.Participant``, which adds serving over NATS; a transport
    takes any ``ParticipantCore`` and calls ``handle_for_wire`` (or ``handle``) per command.
    """

    def __init__(
        self,
        name: str,
        *,
        store: IdempotencyStore | None = None,
        version: str = "1.0.0",
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        max_concurrency: int = 64,
        stale_claim_after: timedelta = timedelta(minutes=5),
        instance: str | None = None,
        description: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not is_name(name):
            raise DefinitionError(f"participant name {name!r} must be {NAME_RULE}")
        if not isinstance(version, str) or not _SEMVER.fullmatch(version):
            raise DefinitionError(f"participant version {version!r} is not a semantic version")
        if max_payload_bytes < 1:
            raise DefinitionError("max_payload_bytes must be positive")
        if max_concurrency < 1:
            raise DefinitionError("max_concurrency must be >= 1")
        if stale_claim_after <= timedelta(0):
            raise DefinitionError("stale_claim_after must be positive")
        self.name = name
        self.version = version
        self.description = description
        self.store: IdempotencyStore = store if store is not None else InMemoryIdempotencyStore()
        self.max_payload_bytes = max_payload_bytes
        self.max_concurrency = max_concurrency
        self.stale_claim_after = stale_claim_after
        if instance is not None and not is_name(instance):
            raise DefinitionError(f"instance {instance!r} must be {NAME_RULE}")
        self.instance = instance
        """A stable name for this replica (e.g. ``payments-2``). Its claims carry it, and when a
        replica starts under the same name it releases the claims its dead predecessor left
        in progress, rather than waiting ``stale_claim_after`` for them."""
        self.replayed = 0
        """Commands answered with the reply recorded for their key, without running the handler:
        repeats (a retry, a re-send after a restart, a duplicate delivery) of a command this
        service had already answered."""
        self._clock: Clock = clock or SystemClock()
        self._handlers: dict[str, Handler] = {}
        self._transactional: set[str] = set()
        self._locks = KeyedLocks()
        self._announcers: list[Announce] = []
        self._completions: Completions | None = None

    @property
    def completions(self) -> Completions:
        """Completes this service's accepted commands, announcing on the serving connection.

        Built on the participant's current ``store`` (a wrapper set after construction, as
        ``saga.testing.explore`` sets one, is the one completions write to)."""
        if self._completions is None or self._completions.store is not self.store:
            self._completions = Completions(
                self.name, self.store, announce=self._announce, clock=self._clock
            )
        return self._completions

    @property
    def _owner_prefix(self) -> str:
        return f"{self.name}/{self.instance}/" if self.instance else f"{self.name}//"

    async def take_over(self) -> int:
        """Release the claims a previous run of this instance left in progress (it is dead).

        A server calls this first when ``instance`` is set; returns how many were released.
        """
        if self.instance is None:
            return 0
        released = await self.store.abandon(owner_prefix=self._owner_prefix)
        if released:
            logger.warning(
                "%s: released %d claims left in progress by a previous run", self.instance, released
            )
        return released

    async def complete(self, token: str, result: JsonObject | None = None) -> None:
        """Complete the accepted command ``token`` (``ctx.token``) with ``result``.

        Records it in the store (the outbox), then announces it on ``saga.completions`` if
        this participant is serving. A repeat with the same result is a no-op. Raises
        ``saga.errors.CompletionRefused`` when the step's compensation closed the command
        first (``compensated``), the token is unknown, or it was completed differently. See
        ``saga.participant.Completions``, which this delegates to.
        """
        await self.completions.complete(token, result)

    async def reject(
        self, token: str, code: str, message: str, details: JsonObject | None = None
    ) -> None:
        """Answer the accepted command ``token`` with a business "no" (no effect taken)."""
        await self.completions.reject(token, code, message, details)

    async def fail(
        self,
        token: str,
        code: str,
        message: str,
        *,
        details: JsonObject | None = None,
        final: bool = False,
    ) -> None:
        """Fail the accepted command ``token``: for good (``final``, the step is compensated),
        or so that a retry of the command runs the handler again."""
        await self.completions.fail(token, code, message, details=details, final=final)

    async def heartbeat(self, token: str) -> int:
        """Extend the accepted command's completion deadline; returns the count so far."""
        return await self.completions.heartbeat(token)

    def completing(self, token: str) -> AbstractAsyncContextManager[CompletingTransaction]:
        """``async with participant.completing(token) as tx:`` write the completion's effect
        on ``tx.connection`` and ``await tx.complete(result)`` in one transaction (SQL store);
        refused (CompletionRefused) once the compensation has closed the command. See
        ``Completions.completing``."""
        return self.completions.completing(token)

    def announce_with(self, announce: Announce) -> Callable[[], None]:
        """Use ``announce`` for completion announcements (a server calls this while it
        serves); returns the function that stops using it."""
        self._announcers.append(announce)

        def detach() -> None:
            if announce in self._announcers:
                self._announcers.remove(announce)

        return detach

    async def _announce(self, headers: Mapping[str, str]) -> None:
        if self._announcers:
            await self._announcers[-1](headers)

    @property
    def commands(self) -> tuple[str, ...]:
        """Registered command names, in registration order."""
        return tuple(self._handlers)

    def command(self, name: str, *, transactional: bool = False) -> Callable[[H], H]:
        """Register ``async def handler(ctx, request)`` as command ``name``.

        With ``transactional=True`` (the transactional inbox; the store must join
        transactions, as ``SqlIdempotencyStore`` does) the handler writes its effect on
        ``ctx.connection``, and the idempotency record commits in that same transaction: a
        committed effect is always recorded and never run again, and an effect whose handler
        raised is rolled back with it.
        """
        if not is_name(name):
            raise DefinitionError(f"command name {name!r} must be {NAME_RULE}")
        if transactional and not self.store.joins_transactions:
            raise DefinitionError(
                f"command {self.name}.{name} is transactional, but {type(self.store).__name__}"
                " cannot join a handler's transaction; use SqlIdempotencyStore"
            )

        def register(handler: H) -> H:
            if not _is_async_function(handler):
                raise DefinitionError(
                    f"handler for {self.name}.{name} must be an 'async def' function,"
                    f" not {handler!r}"
                )
            if name in self._handlers:
                raise DefinitionError(f"command {self.name}.{name} is already registered")
            self._handlers[name] = handler
            if transactional:
                self._transactional.add(name)
            return handler

        return register

    async def handle(self, command: Command) -> Reply:
        """Answer one command: run its handler at most once per idempotency key. Never raises.

        The answer is what a transport sends: one over ``max_payload_bytes`` is replaced as
        ``fit`` says.
        """
        return (await self.handle_for_wire(command))[0]

    async def handle_for_wire(
        self, command: Command, max_bytes: int | None = None
    ) -> tuple[Reply, bytes]:
        """``handle``, with the reply fitted to ``max_bytes`` (see ``fit``) and encoded once."""
        return self.fit(await self._answer(command), max_bytes)

    async def _answer(self, command: Command) -> Reply:
        handler = self._handlers.get(command.command)
        if handler is None or command.service != self.name:
            return Reply.rejected(
                "unknown_command",
                f"service {self.name!r} has no command {command.service}.{command.command}",
                {"known_commands": list(self._handlers)},
            )
        key = self._store_key(command.idempotency_key)
        async with self._locks.hold(key):
            try:
                reply = await self._handle_held(command, handler, key)
            except Exception as exc:
                logger.exception(
                    "idempotency store failed for %s (saga %s step %s)",
                    command.subject,
                    command.saga_id,
                    command.step,
                )
                return Reply.failed("store_error", _message(exc))
        return reply

    def fit(self, reply: Reply, max_bytes: int | None = None) -> tuple[Reply, bytes]:
        """``reply`` and its wire bytes, or, when it is over ``max_bytes`` (default: this
        participant's limit), a final failure that says the effect was taken.

        The recorded reply stays as it was, so the compensation handler still receives the
        forward result; only what crosses the wire changes.
        """
        limit = (
            self.max_payload_bytes if max_bytes is None else min(max_bytes, self.max_payload_bytes)
        )
        try:
            return reply, reply.encode(limit)
        except ProtocolError as exc:
            size = len(json.dumps(reply.to_json(), separators=(",", ":")).encode())
            logger.error("a reply of %d bytes is over the %d byte limit: %s", size, limit, exc)
            too_large = Reply.failed(
                RESULT_TOO_LARGE,
                f"the handler succeeded and its effect was taken, but its reply is {size} bytes,"
                f" over the {limit} byte limit; the step will be compensated",
                {"bytes": size, "limit": limit, "effect_taken": True},
                final=True,
            )
            return too_large, too_large.encode(limit)

    def _store_key(self, key: str) -> str:
        # Namespaced so several services may share one store database.
        return f"{self.name}:{key}"

    async def _handle_held(self, command: Command, handler: Handler, key: str) -> Reply:
        now_ms = self._clock.now_ms()
        stale_before_ms = now_ms - int(self.stale_claim_after.total_seconds() * 1000)
        owner = f"{self._owner_prefix}{uuid.uuid4().hex}"
        claim: Claim | None = await self.store.claim(
            key, owner=owner, now_ms=now_ms, stale_before_ms=stale_before_ms
        )
        if claim is not None and not claim.won and claim.record.retakable(command.attempt):
            # A retry of a long-running command its completer failed for a retry.
            claim = await self.store.retake(
                key, owner=owner, now_ms=now_ms, attempt=command.attempt
            )
        if claim is None:
            return Reply.failed("in_progress", "the command's record changed; retry later")
        if not claim.won:
            return self._replay(claim.record, command)
        replaced = claim.replaced
        if replaced is not None and replaced.state is RecordState.IN_PROGRESS:
            logger.warning("re-claiming %s: its claim by %s went stale", key, replaced.owner)
        try:
            forward_result: JsonObject | None = None
            if command.direction is Direction.COMPENSATE:
                verdict = await self._check_forward(command, owner, now_ms, stale_before_ms)
                if verdict.reply is not None:
                    return await self._settle(key, owner, verdict.reply, final=verdict.final)
                forward_result = verdict.forward_result
            if command.command in self._transactional:
                reply, recorded = await self._run_in_transaction(
                    handler, command, forward_result, key, owner
                )
                if recorded:
                    return reply
                if reply.outcome is Outcome.ACCEPTED:
                    return await self._accept_lost(key, command)
            else:
                reply = await self._run(handler, command, forward_result)
                if reply.outcome is Outcome.ACCEPTED:
                    return await self._record_acceptance(key, owner, command, reply)
        except BaseException:
            # Cancelled or the store failed: the outcome is unknown, so let a retry run again.
            await asyncio.shield(self._release_quietly(key, owner))
            raise
        return await self._settle(key, owner, reply, final=_is_final(reply))

    def _replay(self, record: IdempotencyRecord, command: Command) -> Reply:
        reply = _existing_answer(record, command.idempotency_key)
        if record.state is RecordState.ACCEPTED or record.reply is not None:
            self.replayed += 1
        return reply

    async def _record_acceptance(
        self, key: str, owner: str, command: Command, reply: Reply
    ) -> Reply:
        now_ms = self._clock.now_ms()
        if await self.store.accept(key, owner=owner, attempt=command.attempt, now_ms=now_ms):
            return reply
        return await self._accept_lost(key, command)

    async def _accept_lost(self, key: str, command: Command) -> Reply:
        # The job finished (completed, or failed for a retry) before the acceptance was
        # recorded, or another replica took a stale claim over: the record says what holds.
        record = await self.store.get(key)
        if record is None or record.state is RecordState.IN_PROGRESS:
            logger.warning("the claim on %s was taken over before its acceptance", key)
            return Reply.failed("claim_lost", "another replica took this command over")
        return _existing_answer(record, command.idempotency_key)

    async def _run_in_transaction(
        self,
        handler: Handler,
        command: Command,
        forward_result: JsonObject | None,
        key: str,
        owner: str,
    ) -> tuple[Reply, bool]:
        """Run the handler inside the store's transaction; True when its record committed."""
        async with self.store.transaction(key, owner=owner) as tx:
            reply = await self._run(handler, command, forward_result, tx.connection)
            if reply.outcome is Outcome.ACCEPTED:
                # The effect (a job queued, say) commits with the acceptance, or not at all.
                if await tx.accept(attempt=command.attempt, now_ms=self._clock.now_ms()):
                    return reply, True
                tx.discard()
                return reply, False
            if reply.outcome is Outcome.REJECTED or not _is_final(reply):
                tx.discard()  # a "no" or a failure: no effect is kept
                return reply, False
            if not await tx.complete(reply, now_ms=self._clock.now_ms()):
                tx.discard()  # another replica took the claim over: it owns the effect now
                logger.warning("the claim on %s was taken over; the effect is rolled back", key)
                return Reply.failed("claim_lost", "another replica took this command over"), False
        return reply, True

    async def _check_forward(
        self, command: Command, owner: str, now_ms: int, stale_before_ms: int
    ) -> _Verdict:
        forward_key = self._store_key(
            idempotency_key(command.saga_id, command.step, Direction.FORWARD)
        )
        fence = await self.store.fence(forward_key, owner=owner, now_ms=now_ms)
        if fence.won:
            logger.info("fenced %s: its compensation arrived first", forward_key)
            return _Verdict(reply=Reply.succeeded(dict(FENCED_RESULT)))
        record = fence.record
        if record.state is RecordState.ACCEPTED:
            # A long-running forward command not completed yet: close it first, so a
            # completion racing this compensation is refused, and compensate without a
            # result. A completion that committed first wins instead: judge what it recorded.
            closed = await self.store.cancel(forward_key, reply=COMPENSATED_FORWARD, now_ms=now_ms)
            if closed is None or closed.won:
                logger.info("closed %s, accepted and not completed: compensating", forward_key)
                return _Verdict()
            record = closed.record
        if record.state is RecordState.RETRYABLE:
            # An accepted attempt its completer failed for a retry: it may have taken
            # effect, so compensate it; no retry runs after this.
            retaken = await self.store.retake(forward_key, owner=owner, now_ms=now_ms, attempt=None)
            if retaken is not None and retaken.won:
                return await self._abandon_forward(forward_key, owner, now_ms, retaken.replaced)
            record = retaken.record if retaken is not None else record
        if record.state in (RecordState.IN_PROGRESS, RecordState.ATTEMPTED):
            # A forward attempt reached this service: it may have taken effect, so the
            # compensation handler runs. A forward still running is waited for.
            claim = await self.store.claim(
                forward_key, owner=owner, now_ms=now_ms, stale_before_ms=stale_before_ms
            )
            if claim.won:
                return await self._abandon_forward(forward_key, owner, now_ms, claim.replaced)
            record = claim.record
            if record.state is RecordState.IN_PROGRESS:
                return _Verdict(
                    reply=Reply.failed(
                        "forward_in_progress",
                        "the forward command of this step is still running; retry the compensation",
                    ),
                    final=False,
                )
        if record.state is RecordState.FENCED:
            return _Verdict(reply=Reply.succeeded(dict(FENCED_RESULT)))
        forward = record.reply
        if forward is not None and forward.outcome is Outcome.REJECTED:
            # A rejected forward command had no effect: there is nothing to undo.
            return _Verdict(reply=Reply.succeeded({"forward_rejected": True}))
        if forward is not None and forward.outcome is Outcome.SUCCEEDED:
            return _Verdict(forward_result=dict(forward.result or {}))
        # Abandoned (see below) or a final failure: the forward effect is unknown or was taken
        # without a usable result, so compensate without a result.
        return _Verdict()

    async def _abandon_forward(
        self, forward_key: str, owner: str, now_ms: int, replaced: IdempotencyRecord | None
    ) -> _Verdict:
        # The forward handler died mid-way (stale claim) or failed (attempted): either way its
        # effect is unknown. Record it as abandoned, so a redelivery never runs it, and
        # compensate regardless.
        if replaced is not None:
            logger.warning(
                "forward %s was %s; compensating anyway",
                forward_key,
                "abandoned mid-way" if replaced.state is RecordState.IN_PROGRESS else "failed",
            )
        await self.store.complete(forward_key, owner=owner, reply=ABANDONED_FORWARD, now_ms=now_ms)
        return _Verdict()

    async def _run(
        self,
        handler: Handler,
        command: Command,
        forward_result: JsonObject | None,
        connection: Any = None,
    ) -> Reply:
        ctx = CommandContext(
            connection=connection,
            saga_id=command.saga_id,
            saga_name=command.saga_name,
            step=command.step,
            direction=command.direction,
            attempt=command.attempt,
            idempotency_key=command.idempotency_key,
            service=command.service,
            command=command.command,
            forward_result=forward_result,
        )
        where = f"{command.subject} (saga {command.saga_id} step {command.step}"
        where += f" {command.direction.value} attempt {command.attempt})"
        direction = command.direction.value
        with (
            saga_context(command.saga_id, command.step, direction, command.attempt),
            tracing.handler_span(
                command.service, command.command, saga_id=command.saga_id,
                saga_name=command.saga_name, step=command.step, direction=direction,
                attempt=command.attempt,
            ) as span,
        ):  # fmt: skip
            try:
                result: object = await handler(ctx, dict(command.payload))
            except Rejected as exc:
                span.outcome = "rejected"
                return self._rejection(exc, where)
            except Exception as exc:
                span.outcome = "failed"
                logger.exception("handler %s raised; the step will be retried", where)
                return Reply.failed("handler_error", _message(exc))
            if isinstance(result, Accepted):
                span.outcome = "accepted"
        # The handler returned, so its effect was taken: from here on the answer is final,
        # whatever is wrong with the result, and a retry never runs the handler again.
        if isinstance(result, Accepted):
            if command.direction is not Direction.FORWARD or result.token != ctx.token:
                logger.error("handler %s returned an acceptance not made by its ctx", where)
                return _bad_result("handler returned an Accepted not made by ctx.accept()")
            return Reply.accepted(result.token)
        if result is None:
            result = {}
        if not isinstance(result, dict):
            logger.error("handler %s returned %s, not a dict", where, type(result).__name__)
            return _bad_result(f"handler returned {type(result).__name__}, not a dict or None")
        try:
            # Round-trip through JSON: what is recorded is exactly what a repeat will get. The
            # record may be larger than a message; ``fit`` shapes what crosses the wire.
            normalised = json.loads(encode_json(result, MAX_RECORDED_RESULT_BYTES))
        except ProtocolError as exc:
            logger.error("handler %s returned an unusable result: %s", where, exc.message)
            return _bad_result(f"handler result: {exc.message}")
        return Reply.succeeded(normalised)

    def _rejection(self, exc: Rejected, where: str) -> Reply:
        reply = Reply.rejected(str(exc.code), exc.message, exc.details)
        try:
            normalised = json.loads(reply.encode(self.max_payload_bytes))
            return Reply.from_json(normalised)
        except ProtocolError as error:
            logger.warning("rejection from %s dropped its details: %s", where, error.message)
            return Reply.rejected(
                str(exc.code)[:200],
                exc.message[:_MAX_ERROR_MESSAGE],
                {"details_error": error.message[:_MAX_ERROR_MESSAGE]},
            )

    async def _settle(self, key: str, owner: str, reply: Reply, *, final: bool) -> Reply:
        if not final:
            await self.store.release(key, owner=owner)
            return reply
        try:
            recorded = await self.store.complete(
                key, owner=owner, reply=reply, now_ms=self._clock.now_ms()
            )
        except Exception:
            # The effect happened; answer truthfully. The claim goes stale and a repeat after
            # that runs the handler again, which is the best an unreachable store allows.
            logger.exception("could not record the reply for %s", key)
            return reply
        if not recorded:
            logger.warning("the claim on %s was taken over before its reply was recorded", key)
        return reply

    async def _release_quietly(self, key: str, owner: str) -> None:
        try:
            await self.store.release(key, owner=owner)
        except Exception:
            logger.exception("could not release the claim on %s", key)

    def __repr__(self) -> str:
        return f"<Participant {self.name} {self.version} commands={list(self._handlers)}>"


def _is_final(reply: Reply) -> bool:
    """Recorded for good: a success, a rejection, or a failure marked final."""
    return reply.outcome is not Outcome.FAILED or reply.final


def _bad_result(message: str) -> Reply:
    return Reply.failed(
        "bad_result",
        f"{message}; the handler returned, so its effect was taken: the step will be compensated",
        {"effect_taken": True},
        final=True,
    )


def _is_async_function(value: object) -> bool:
    return inspect.iscoroutinefunction(value)


def _existing_answer(record: IdempotencyRecord, token: str) -> Reply:
    if record.state is RecordState.ACCEPTED:
        return Reply.accepted(token, record.heartbeats)
    if record.state in (RecordState.DONE, RecordState.RETRYABLE) and record.reply is not None:
        # RETRYABLE: a completer's failure, answered to re-sends of the failed attempt.
        return record.reply
    if record.state is RecordState.FENCED:
        return Reply.rejected(
            "fenced",
            "this step's compensation already arrived here; the forward command will not run",
        )
    return Reply.failed("in_progress", "another replica is handling this command; retry later")


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:_MAX_ERROR_MESSAGE]
