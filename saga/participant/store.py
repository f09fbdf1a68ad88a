"""The IdempotencyStore port: atomic claims on idempotency keys and the replies recorded for them.

A key moves ``(absent) -> in_progress -> done`` when a handler runs and answers for good, back
to ``(absent)`` when a transient failure releases the claim, and ``(absent) -> fenced`` when a
compensation arrives for a forward command that never ran here. ``claim`` and ``fence`` must be
atomic across every process sharing the store: at most one caller wins a key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self

from saga.protocol import Reply


class RecordState(StrEnum):
    """The state of one idempotency key. Stored values never change."""

    IN_PROGRESS = "in_progress"
    """Claimed by ``owner``; its handler is running (or its process died)."""
    DONE = "done"
    """Answered for good; ``reply`` is returned to every repeat."""
    FENCED = "fenced"
    """A forward key whose compensation arrived first: the forward command must never run."""


@dataclass(frozen=True, kw_only=True)
class IdempotencyRecord:
    """What a store holds for one key."""

    key: str
    state: RecordState
    owner: str
    claimed_at_ms: int
    updated_ms: int
    reply: Reply | None = None


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

        Wins when there is no record, or when an in-progress record was claimed before
        ``stale_before_ms`` (its owner is presumed dead). Otherwise returns the existing record.
        """

    @abstractmethod
    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        """Record ``reply`` as the final answer; False if ``owner`` no longer holds the claim."""

    @abstractmethod
    async def release(self, key: str, *, owner: str) -> bool:
        """Drop ``owner``'s in-progress claim so a retry runs again; False if not held."""

    @abstractmethod
    async def fence(self, key: str, *, owner: str, now_ms: int) -> Claim:
        """Atomically mark an absent ``key`` fenced, so it can never be claimed.

        Wins only when there is no record; otherwise returns the existing record.
        """

    @abstractmethod
    async def abandon(self, *, owner_prefix: str) -> int:
        """Drop every in-progress claim whose owner starts with ``owner_prefix``.

        Called when a replica starts again under the same instance name: its previous run is
        dead, so its unfinished claims are released at once instead of going stale slowly.
        Returns how many were dropped.
        """

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
