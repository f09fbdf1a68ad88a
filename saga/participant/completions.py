"""Completions: finish a long-running command later, from any process that shares the store.

A handler that answers ``return ctx.accept()`` leaves its command ``accepted`` in the
idempotency store. Whoever does the work (a background task, a worker process, a webhook
handler) later calls ``complete``, ``reject`` or ``fail`` with the command's token, and
``heartbeat`` while it works. Each writes the store first: the store is the outbox, the durable
truth a re-sent command is answered from. Then it announces the change on
``saga.protocol.COMPLETIONS_SUBJECT`` (the command's headers, no body) so the saga's
coordinator re-sends the command at once and reads the outcome. An announcement that is lost
(NATS down, no connection given) costs only time: coordinators re-send accepted commands on
their own every ``Step.poll_every`` and after a recovery.

This module knows no transport: announcing is a callable (``Announce``) that the NATS server
(``saga.participant.nats.completion_announcer``) provides.

With a SQL store, ``completing(token)`` is the inbox for completions: the completion's own
effect (say, the shipment's tracking number in the service's table) and the completion commit
in one transaction, or neither does; and it is refused, effect and all, once the step's
compensation has closed the command.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from saga.clock import Clock, SystemClock
from saga.errors import CompletionRefused, IdempotencyStoreError
from saga.names import is_name, is_saga_id
from saga.participant.context import JsonObject
from saga.participant.store import (
    Claim,
    CompletionTransaction,
    IdempotencyRecord,
    IdempotencyStore,
    RecordState,
)
from saga.protocol import (
    HEADER_DIRECTION,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_SAGA_ID,
    HEADER_STEP,
    Direction,
    Reply,
)

logger = logging.getLogger(__name__)

Announce = Callable[[Mapping[str, str]], Awaitable[None]]
"""Publishes one completion announcement (the command's headers, an empty body)."""

MAX_RECORDED_RESULT_BYTES = 64 * 1024 * 1024
"""The largest handler result recorded (and handed to the compensation handler)."""

FORWARD_COMPENSATED = "forward_compensated"
"""The code recorded for an accepted command closed by its compensation before it completed."""
COMPENSATED_FORWARD = Reply.failed(
    FORWARD_COMPENSATED,
    "the step's compensation started before this long-running command completed;"
    " it will not complete",
    final=True,
)
"""Recorded for an accepted forward command when its compensation arrives first."""


def parse_token(token: str) -> tuple[str, str]:
    """The saga id and step a completion token names; CompletionRefused if it is not one."""
    parts = token.split("/") if isinstance(token, str) else []
    if (
        len(parts) != 3
        or parts[2] != Direction.FORWARD.value
        or not is_saga_id(parts[0])
        or not is_name(parts[1])
    ):
        raise CompletionRefused(f"{str(token)[:120]!r} is not a completion token", token=token)
    return parts[0], parts[1]


def announcement(token: str) -> dict[str, str]:
    """The headers announced on ``COMPLETIONS_SUBJECT`` for ``token``'s command."""
    saga_id, step = parse_token(token)
    return {
        HEADER_SAGA_ID: saga_id,
        HEADER_STEP: step,
        HEADER_DIRECTION: Direction.FORWARD.value,
        HEADER_IDEMPOTENCY_KEY: token,
    }


def normalised(reply: Reply) -> Reply:
    """``reply`` as a repeat will read it back: round-tripped through JSON (ProtocolError if
    it is not JSON or is over ``MAX_RECORDED_RESULT_BYTES``)."""
    return Reply.from_json(json.loads(reply.encode(MAX_RECORDED_RESULT_BYTES)))


class Completions:
    """Complete, reject, fail or heartbeat one service's accepted commands.

    ``service`` is the participant's name and ``store`` its idempotency store (for another
    process: a ``SqlIdempotencyStore`` on the same database). ``announce`` publishes the
    announcement; without it the outcome is only recorded, and coordinators find it when
    they next re-send the command (``Step.poll_every``). ``Participant.complete`` and friends
    use one of these with the serving connection; ``Participant.completer(nc)`` makes one for a
    process that does not serve.

    Every method writes the store first, then announces; an announcement that fails is
    logged, never raised (the record is what counts). Repeating a call that succeeded is a
    no-op that announces again, so a worker that crashed between the two may simply repeat it.
    """

    def __init__(
        self,
        service: str,
        store: IdempotencyStore,
        *,
        announce: Announce | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self.announce = announce
        """Publishes announcements; None records only."""
        self._clock: Clock = clock or SystemClock()

    async def complete(self, token: str, result: JsonObject | None = None) -> None:
        """The command succeeded with ``result`` (a JSON object): the step's result.

        Raises CompletionRefused when the compensation closed the command first
        (``compensated``), the token is unknown, or it was completed with another outcome;
        ProtocolError when ``result`` is not JSON.
        """
        await self._finish(token, Reply.succeeded(result or {}), retry=False)

    async def reject(
        self, token: str, code: str, message: str, details: JsonObject | None = None
    ) -> None:
        """A business "no": the command had no effect and is never retried (as ``Rejected``)."""
        await self._finish(token, Reply.rejected(code, message, details), retry=False)

    async def fail(
        self,
        token: str,
        code: str,
        message: str,
        *,
        details: JsonObject | None = None,
        final: bool = False,
    ) -> None:
        """The command failed. ``final``: the effect was (or may have been) taken and it can
        never succeed: the step is compensated. Otherwise the coordinator retries it as its
        retry policy says, and the retry (a later attempt) runs the handler again; re-sends of
        the accepted attempt answer this failure."""
        reply = Reply.failed(code, message, details, final=final)
        await self._finish(token, reply, retry=not final)

    async def heartbeat(self, token: str) -> int:
        """Say the work goes on: each heartbeat extends the step's completion deadline.

        Returns the count so far. A heartbeat before the handler's acceptance is recorded
        counts nothing and returns 0. Raises CompletionRefused when the command is over:
        ``compensated`` (stop the work) or completed already.
        """
        saga_id, step = parse_token(token)
        found = await self.store.heartbeat(self._key(token), now_ms=self._clock.now_ms())
        if found is None:
            raise self._unknown(token, saga_id, step)
        if not found.won:
            if found.record.state is RecordState.IN_PROGRESS:
                return 0
            raise self._refusal(token, found.record, saga_id, step, "heartbeat")
        await self._announce(token)
        return found.record.heartbeats

    @asynccontextmanager
    async def completing(self, token: str) -> AsyncIterator[CompletingTransaction]:
        """``async with completions.completing(token) as tx:`` the inbox for a completion.

        Write the completion's effect on ``tx.connection`` (for ``SqlIdempotencyStore``, an
        SQLAlchemy ``AsyncConnection``; do not commit it) and call ``await
        tx.complete(result)`` (or ``tx.reject``, ``tx.fail``): both commit together when the
        block ends, and the completion is announced after. If the block raises, both roll
        back. Entering raises CompletionRefused when the command is not pending any more
        (compensated, completed already, unknown), so the effect is never written twice or
        after the compensation; the record stays locked (PostgreSQL row lock, SQLite write
        lock) until the block ends, so a compensation arriving meanwhile waits and then finds
        the command completed. Needs a store that joins transactions (IdempotencyStoreError
        otherwise).
        """
        saga_id, step = parse_token(token)
        if not self.store.joins_transactions:
            raise IdempotencyStoreError(
                f"{type(self.store).__name__} cannot join a completion's transaction;"
                " use SqlIdempotencyStore"
            )
        async with self.store.completion_transaction(self._key(token)) as stored:
            record = stored.record
            if record is None:
                raise self._unknown(token, saga_id, step)
            if record.state not in (RecordState.ACCEPTED, RecordState.IN_PROGRESS):
                raise self._refusal(token, record, saga_id, step, "complete")
            tx = CompletingTransaction(self, token, stored)
            yield tx
        if tx.finished:
            await self._announce(token)

    async def _finish(self, token: str, reply: Reply, *, retry: bool) -> None:
        reply = normalised(reply)
        found = await self.store.finish(
            self._key(token), reply=reply, retry=retry, now_ms=self._clock.now_ms()
        )
        self._judge(token, found, reply, retry=retry)
        await self._announce(token)

    def _judge(self, token: str, found: Claim | None, reply: Reply, *, retry: bool) -> None:
        """Raise CompletionRefused unless ``found`` says ``reply`` is recorded (now or before)."""
        saga_id, step = parse_token(token)
        if found is None:
            raise self._unknown(token, saga_id, step)
        record = found.record
        if not found.won:
            wanted = RecordState.RETRYABLE if retry else RecordState.DONE
            if record.state is not wanted or record.reply != reply:
                raise self._refusal(token, record, saga_id, step, "complete")
            logger.debug("%s was completed already with the same outcome", token)

    async def _announce(self, token: str) -> None:
        if self.announce is None:
            return
        try:
            await self.announce(announcement(token))
        except Exception as exc:
            # The store holds the outcome: a coordinator's own re-send finds it.
            logger.warning("could not announce the completion of %s: %s", token, exc)

    def _key(self, token: str) -> str:
        # As ParticipantCore namespaces its keys, so several services may share one store.
        return f"{self.service}:{token}"

    def _unknown(self, token: str, saga_id: str, step: str) -> CompletionRefused:
        return CompletionRefused(
            f"service {self.service!r} has no command for token {token!r}",
            token=token,
            saga_id=saga_id,
            step=step,
        )

    def _refusal(
        self, token: str, record: IdempotencyRecord, saga_id: str, step: str, what: str
    ) -> CompletionRefused:
        recorded = record.reply.to_json() if record.reply is not None else None
        compensated = record.state is RecordState.FENCED or (
            record.reply is not None
            and record.reply.error is not None
            and record.reply.error.code == FORWARD_COMPENSATED
        )
        if compensated:
            message = f"cannot {what} {token!r}: the step's compensation has closed it"
        elif record.state is RecordState.DONE:
            outcome = record.reply.outcome.value if record.reply is not None else "done"
            message = f"cannot {what} {token!r}: it was completed already ({outcome})"
        else:
            message = f"cannot {what} {token!r}: it is not accepted ({record.state.value})"
        return CompletionRefused(
            message,
            token=token,
            compensated=compensated,
            recorded=recorded,
            saga_id=saga_id,
            step=step,
        )


class CompletingTransaction:
    """The completion of one command inside a database transaction (``completing(token)``)."""

    def __init__(self, completions: Completions, token: str, stored: CompletionTransaction) -> None:
        self.token = token
        """The command's completion token."""
        self.finished = False
        """Whether a completion was recorded in this transaction (committed with it)."""
        self._completions = completions
        self._stored = stored

    @property
    def connection(self) -> Any:
        """The transaction to write the completion's effect on (``SqlIdempotencyStore``: an
        SQLAlchemy ``AsyncConnection``). It commits when the block ends; do not commit it."""
        return self._stored.connection

    async def complete(self, result: JsonObject | None = None) -> None:
        """As ``Completions.complete``, committed with the effect."""
        await self._finish(Reply.succeeded(result or {}), retry=False)

    async def reject(self, code: str, message: str, details: JsonObject | None = None) -> None:
        """As ``Completions.reject``, committed with the effect."""
        await self._finish(Reply.rejected(code, message, details), retry=False)

    async def fail(
        self,
        code: str,
        message: str,
        *,
        details: JsonObject | None = None,
        final: bool = False,
    ) -> None:
        """As ``Completions.fail``, committed with the effect."""
        await self._finish(Reply.failed(code, message, details, final=final), retry=not final)

    async def _finish(self, reply: Reply, *, retry: bool) -> None:
        reply = normalised(reply)
        now_ms = self._completions._clock.now_ms()
        found = await self._stored.finish(reply, retry=retry, now_ms=now_ms)
        self._completions._judge(self.token, found, reply, retry=retry)
        self.finished = True
