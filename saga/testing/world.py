"""The world a run happens in: the user's participants, and a witness of their effects."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from saga.participant import Participant
from saga.participant.store import Claim, IdempotencyRecord, IdempotencyStore
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

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> IdempotencyRecord | None:
        return await self.inner.get(key)

    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        return await self.inner.claim(
            key, owner=owner, now_ms=now_ms, stale_before_ms=stale_before_ms
        )

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

    async def abandon(self, *, owner_prefix: str) -> int:
        return await self.inner.abandon(owner_prefix=owner_prefix)
