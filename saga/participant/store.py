"""The IdempotencyStore port: atomic claims on idempotency keys and the replies recorded for them.

A key moves ``(absent) -> in_progress -> done`` when a handler runs and answers for good;
``in_progress -> attempted`` when an attempt fails transiently (or its process dies), and
``attempted -> in_progress`` when a retry claims it again; ``(absent) -> fenced`` when a
compensation arrives for a forward command that never reached this service. ``attempted`` is
never forgotten: a forward attempt that started may have taken effect, so its compensation must
run. ``claim`` and ``fence`` must be atomic across every process sharing the store: at most one
caller wins a key.

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


@dataclass(frozen=True, kw_only=True)
class IdempotencyRecord:
    """What a store holds for one key."""

    key: str
    state: RecordState
    owner: str
    claimed_at_ms: int
    updated_ms: int
    reply: Reply | None = None

    def claimable(self, stale_before_ms: int) -> bool:
        """Whether a new claim may take this record over: an attempt that did not answer for
        good, or a claim in progress since before ``stale_before_ms`` (its owner is dead)."""
        if self.state is RecordState.ATTEMPTED:
            return True
        return self.state is RecordState.IN_PROGRESS and self.claimed_at_ms < stale_before_ms


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

    @abstractmethod
    def discard(self) -> None:
        """Roll back at the end of the block instead of committing."""
