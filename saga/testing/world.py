"""The world a run happens in: the user's participants, and a witness of their effects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from saga.participant import Participant
from saga.participant.store import (
    Claim,
    CompletionTransaction,
    EffectTransaction,
    IdempotencyRecord,
    IdempotencyStore,
)
from saga.protocol import Reply
from saga.testing.transport import Delivery, current_delivery


def participants_of(world: object) -> list[Participant]:
    """The participants of a world: its ``participants`` attribute, or the world itself."""
    found = getattr(world, "participants", world)
    items = list(found) if isinstance(found, Iterable) else []
    if not items or not all(isinstance(p, Participant) for p in items):
        raise TypeError(
            "make_world must return Participants, or an object whose 'participants'"
            f" attribute lists them; got {world!r}"
        )
    return items


class WitnessStore(IdempotencyStore):
    """Wraps a participant's store to see each reply it records, and for which command."""

    def __init__(
        self, inner: IdempotencyStore, on_record: Callable[[Delivery, Reply], None]
    ) -> None:
        self.inner = inner
        self._on_record = on_record
        self._accepted: dict[str, Delivery] = {}
        """The delivery that claimed each key: if it is accepted (long-running), its completion,
        made later by the service's own job, is that delivery's effect."""

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> IdempotencyRecord | None:
        return await self.inner.get(key)

    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        claim = await self.inner.claim(
            key, owner=owner, now_ms=now_ms, stale_before_ms=stale_before_ms
        )
        delivery = current_delivery()
        if claim.won and delivery is not None and key.endswith(delivery.command.idempotency_key):
            self._accepted[key] = delivery  # should it be accepted, its completion is its effect
        return claim

    async def fence(self, key: str, *, owner: str, now_ms: int) -> Claim:
        return await self.inner.fence(key, owner=owner, now_ms=now_ms)

    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        recorded = await self.inner.complete(key, owner=owner, reply=reply, now_ms=now_ms)
        delivery = current_delivery()
        # Only the command's own key: a compensation may also close its forward key.
        if recorded and delivery is not None and key.endswith(delivery.command.idempotency_key):
            self._on_record(delivery, reply)
        return recorded

    async def release(self, key: str, *, owner: str) -> bool:
        return await self.inner.release(key, owner=owner)

    @property
    def identity(self) -> str | None:
        return self.inner.identity

    @property
    def joins_transactions(self) -> bool:
        return self.inner.joins_transactions

    @asynccontextmanager
    async def transaction(self, key: str, *, owner: str) -> AsyncIterator[EffectTransaction]:
        async with self.inner.transaction(key, owner=owner) as tx:
            witnessed = _WitnessedTransaction(tx)
            yield witnessed
        # Committed: the reply recorded inside the transaction is the command's effect.
        delivery = current_delivery()
        if (
            witnessed.reply is not None
            and delivery is not None
            and not witnessed.discarded
            and key.endswith(delivery.command.idempotency_key)
        ):
            self._on_record(delivery, witnessed.reply)

    async def abandon(self, *, owner_prefix: str) -> int:
        return await self.inner.abandon(owner_prefix=owner_prefix)

    # Long-running commands: passed through, so a world's handlers may accept and complete.

    async def accept(self, key: str, *, owner: str, attempt: int, now_ms: int) -> bool:
        return await self.inner.accept(key, owner=owner, attempt=attempt, now_ms=now_ms)

    async def finish(self, key: str, *, reply: Reply, retry: bool, now_ms: int) -> Claim | None:
        finished = await self.inner.finish(key, reply=reply, retry=retry, now_ms=now_ms)
        delivery = self._accepted.get(key)
        if finished is not None and finished.won and delivery is not None:
            self._on_record(delivery, reply)  # completed later, by the service's own job
        return finished

    async def cancel(self, key: str, *, reply: Reply, now_ms: int) -> Claim | None:
        return await self.inner.cancel(key, reply=reply, now_ms=now_ms)

    async def retake(
        self, key: str, *, owner: str, now_ms: int, attempt: int | None
    ) -> Claim | None:
        return await self.inner.retake(key, owner=owner, now_ms=now_ms, attempt=attempt)

    async def heartbeat(self, key: str, *, now_ms: int) -> Claim | None:
        return await self.inner.heartbeat(key, now_ms=now_ms)

    def completion_transaction(
        self, key: str
    ) -> AbstractAsyncContextManager[CompletionTransaction]:
        return self.inner.completion_transaction(key)


class _WitnessedTransaction(EffectTransaction):
    def __init__(self, inner: EffectTransaction) -> None:
        self.inner = inner
        self.reply: Reply | None = None
        self.discarded = False

    @property
    def connection(self) -> object:
        return self.inner.connection

    async def complete(self, reply: Reply, *, now_ms: int) -> bool:
        recorded = await self.inner.complete(reply, now_ms=now_ms)
        if recorded:
            self.reply = reply
        return recorded

    async def accept(self, *, attempt: int, now_ms: int) -> bool:
        return await self.inner.accept(attempt=attempt, now_ms=now_ms)

    def discard(self) -> None:
        self.discarded = True
        self.inner.discard()
