"""The IdempotencyStore port: atomic claims on idempotency keys and the replies recorded for them.

A key moves ``(absent) -> in_progress -> done`` when a handler runs and answers for good;
``in_progress -> attempted`` when an attempt fails transiently (or its process dies), and
``attempted -> in_progress`` when a retry claims it again; ``(absent) -> fenced`` when a
compensation arrives for a forward command that never reached this service. ``attempted`` is
never forgotten: a forward attempt that started may have taken effect, so its compensation must
run. ``claim`` and ``fence`` must be atomic across every process sharing the store: at most one
caller wins a key.

A long-running command (its handler answered ``ctx.accept()``) moves ``in_progress ->
accepted``; a completion then moves ``accepted -> done`` (completed, rejected or failed for
good) or ``accepted -> retryable`` (a failure that a retry of the command may try again:
``retryable -> in_progress`` by ``retake``), and a heartbeat counts up on ``accepted``. The
compensation of an accepted command closes it first (``cancel``: ``accepted -> done``), so a
completion racing it has exactly one winner.

A store that can put a handler's effect and its idempotency record in one database transaction
(the transactional inbox) implements ``transaction``; ``SqlIdempotencyStore`` does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from saga.protocol import Reply


class RecordState(StrEnum):
    """The state of one idempotency key. Stored values never change."""

    IN_PROGRESS = "in_progress"
    """Claimed by ``owner``; its handler is running (or its process died)."""
    DONE = "done"
    """Answered for good; ``reply`` is returned to every repeat."""
    FENCED = "fenced"
    """A forward key whose compensation arrived first: the forward command must never run."""
    ATTEMPTED = "attempted"
    """An attempt ran (or started) and did not answer for good: a retry may claim the key
    again, and a compensation of this forward key runs its handler (there may be an effect)."""
    ACCEPTED = "accepted"
    """A long-running command: its handler accepted it, and it is completed later (``finish``)
    or closed by its compensation (``cancel``). Repeats answer ``accepted``; never stale."""
    RETRYABLE = "retryable"
    """A long-running command whose completer failed it for a retry: re-sends of the accepted
    ``attempt`` answer the recorded failure; a later attempt (or the compensation) takes the
    key with ``retake``. Not ``claim``-able, so its failure is not lost to a plain re-send."""


@dataclass(frozen=True, kw_only=True)
class IdempotencyRecord:
    """What a store holds for one key."""

    key: str
    state: RecordState
    owner: str
    claimed_at_ms: int
    updated_ms: int
    reply: Reply | None = None
    """``done``: the final answer; ``retryable``: the failure its completer recorded."""
    heartbeats: int = 0
    """``accepted``: how many heartbeats the command's completer has sent."""
    attempt: int | None = None
    """``accepted`` and ``retryable``: the command's attempt that was accepted (None: its job
    failed it before the acceptance was recorded)."""

    def claimable(self, stale_before_ms: int) -> bool:
        """Whether a new claim may take this record over: an attempt that did not answer for
        good, or a claim in progress since before ``stale_before_ms`` (its owner is dead)."""
        if self.state is RecordState.ATTEMPTED:
            return True
        return self.state is RecordState.IN_PROGRESS and self.claimed_at_ms < stale_before_ms

    def retakable(self, attempt: int | None) -> bool:
        """Whether ``retake`` may take this record: ``retryable``, and ``attempt`` is later
        than the one that failed (None: regardless, as for a compensation)."""
        if self.state is not RecordState.RETRYABLE:
            return False
        return attempt is None or attempt > (self.attempt or 0)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """The answer to ``claim`` or ``fence``.

    ``won`` says whether the caller now holds the key; ``record`` is the caller's new record
    when it won, otherwise the existing one. ``replaced`` is the stale in-progress record a
    claim took over, if any: its handler may or may not have had an effect.
    """

    won: bool
    record: IdempotencyRecord
    replaced: IdempotencyRecord | None = None


class IdempotencyStore(ABC):
    """Durable (or in-memory) idempotency records. Implementations: memory, SQL."""

    @abstractmethod
    async def open(self) -> None:
        """Prepare the store (connect, create tables). Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources. Idempotent."""

    @abstractmethod
    async def get(self, key: str) -> IdempotencyRecord | None:
        """The record for ``key``, or None."""

    @abstractmethod
    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        """Atomically take ``key`` as in progress for ``owner``.

        Wins when there is no record, an ``attempted`` record, or an in-progress record
        claimed before ``stale_before_ms`` (its owner is presumed dead); ``replaced`` is then
        the record taken over. Otherwise returns the existing record.
        """

    @abstractmethod
    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        """Record ``reply`` as the final answer; False if ``owner`` no longer holds the claim."""

    @abstractmethod
    async def release(self, key: str, *, owner: str) -> bool:
        """Turn ``owner``'s in-progress claim into ``attempted`` so a retry may run again;
        False if not held. The record stays: the attempt may have taken effect."""

    @abstractmethod
    async def fence(self, key: str, *, owner: str, now_ms: int) -> Claim:
        """Atomically mark an absent ``key`` fenced, so it can never be claimed.

        Wins only when there is no record; otherwise returns the existing record (an
        ``attempted`` one means a forward attempt reached this service).
        """

    @abstractmethod
    async def abandon(self, *, owner_prefix: str) -> int:
        """Release (as ``attempted``) every in-progress claim whose owner starts with
        ``owner_prefix``.

        Called when a replica starts again under the same instance name: its previous run is
        dead, so its unfinished claims are released at once instead of going stale slowly.
        Returns how many were released.
        """

    # Long-running commands. Not abstract, so a store written before them still works for
    # every handler that answers at once; the SDK's stores implement them.

    async def accept(self, key: str, *, owner: str, attempt: int, now_ms: int) -> bool:
        """Turn ``owner``'s in-progress claim into ``accepted`` (heartbeats 0, ``attempt``
        recorded); False if ``owner`` no longer holds the claim (a completion may have come
        first: read the record)."""
        raise NotImplementedError(f"{type(self).__name__} does not support long-running steps")

    async def finish(self, key: str, *, reply: Reply, retry: bool, now_ms: int) -> Claim | None:
        """Complete a pending command, atomically: an ``accepted`` record (or an
        ``in_progress`` one: its handler has not answered yet, and its job finished first)
        becomes ``done`` with ``reply``, or ``retryable`` with it when ``retry``.

        ``won`` says whether this call changed the record; otherwise ``record`` is the
        current one (already completed, or cancelled by the compensation). None: no record.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support long-running steps")

    async def cancel(self, key: str, *, reply: Reply, now_ms: int) -> Claim | None:
        """Close an ``accepted`` record for good (``done`` with ``reply``), atomically, before
        its compensation runs: a later ``finish`` loses. ``won`` False: it was not accepted
        any more (a completion came first), and ``record`` is the current one. None: no record.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support long-running steps")

    async def retake(
        self, key: str, *, owner: str, now_ms: int, attempt: int | None
    ) -> Claim | None:
        """Atomically take a ``retryable`` record as in progress for ``owner``, when
        ``record.retakable(attempt)``; ``replaced`` is the record taken. ``won`` False: the
        record is not retakable (``record`` is the current one). None: no record."""
        raise NotImplementedError(f"{type(self).__name__} does not support long-running steps")

    async def heartbeat(self, key: str, *, now_ms: int) -> Claim | None:
        """Count one heartbeat on an ``accepted`` record, atomically; ``won`` False (nothing
        changed) when it is not accepted. None: no record."""
        raise NotImplementedError(f"{type(self).__name__} does not support long-running steps")

    @property
    def identity(self) -> str | None:
        """What names this store's records (None: unknown). Replicas of one service must
        share one store, so they must show the same identity.

        Replicas announce it in their ``nats.micro`` metadata, and warn when another replica
        of their service announces a different one (separate stores run effects twice).
        Available once the store is open.
        """
        return None

    @property
    def joins_transactions(self) -> bool:
        """True when ``transaction`` is supported (the transactional inbox)."""
        return False

    def transaction(
        self, key: str, *, owner: str
    ) -> AbstractAsyncContextManager[EffectTransaction]:
        """An open database transaction for a handler's effect and ``key``'s record.

        On leaving the block it commits, unless ``discard()`` was called or the block raised:
        then it rolls back, effect and record together.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot join a handler's transaction")

    def completion_transaction(
        self, key: str
    ) -> AbstractAsyncContextManager[CompletionTransaction]:
        """An open database transaction with ``key``'s record read (and locked where the
        database can), for a completion's effect and the completion itself (the inbox).

        On leaving the block it commits, unless the block raised: then it rolls back, effect
        and completion together. Supported when ``joins_transactions`` is.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot join a completion's transaction")

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class EffectTransaction(ABC):
    """A transaction shared by a handler's effect and its idempotency record."""

    @property
    @abstractmethod
    def connection(self) -> Any:
        """The handler's handle on the transaction (``SqlIdempotencyStore``: an SQLAlchemy
        ``AsyncConnection``). The handler must not commit or roll it back."""

    @abstractmethod
    async def complete(self, reply: Reply, *, now_ms: int) -> bool:
        """Record ``reply`` as the key's final answer, inside this transaction; False if the
        claim was lost (then ``discard()``: another replica owns the key now)."""

    async def accept(self, *, attempt: int, now_ms: int) -> bool:
        """Record the key as ``accepted`` (a long-running command), inside this transaction;
        False if the claim was lost or a completion came first (then ``discard()``)."""
        raise NotImplementedError(f"{type(self).__name__} does not support long-running steps")

    @abstractmethod
    def discard(self) -> None:
        """Roll back at the end of the block instead of committing."""


class CompletionTransaction(ABC):
    """A transaction shared by a completion's effect and the completion of a pending command."""

    @property
    @abstractmethod
    def connection(self) -> Any:
        """The completer's handle on the transaction (``SqlIdempotencyStore``: an SQLAlchemy
        ``AsyncConnection``). The completer must not commit or roll it back."""

    @property
    @abstractmethod
    def record(self) -> IdempotencyRecord | None:
        """The key's record as read at the start of the transaction (None: no record)."""

    @abstractmethod
    async def finish(self, reply: Reply, *, retry: bool, now_ms: int) -> Claim | None:
        """As ``IdempotencyStore.finish``, inside this transaction."""
