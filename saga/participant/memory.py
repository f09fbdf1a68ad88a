"""InMemoryIdempotencyStore: the IdempotencyStore in a dict, for tests and single-process use."""

from __future__ import annotations

import uuid
from dataclasses import replace

from saga.participant.store import Claim, IdempotencyRecord, IdempotencyStore, RecordState
from saga.protocol import Reply


class InMemoryIdempotencyStore(IdempotencyStore):
    """Records live in this process only; every method is atomic (no awaits inside)."""

    def __init__(self) -> None:
        self._records: dict[str, IdempotencyRecord] = {}
        self._identity = f"memory:{uuid.uuid4().hex}"

    @property
    def identity(self) -> str:
        """Unique to this object: replicas in other processes can never share it."""
        return self._identity

    def __len__(self) -> int:
        return len(self._records)

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Records stay until the object is dropped, so a reopened store still dedups."""

    async def get(self, key: str) -> IdempotencyRecord | None:
        return self._records.get(key)

    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        existing = self._records.get(key)
        if existing is not None and not existing.claimable(stale_before_ms):
            return Claim(won=False, record=existing)
        return self._put(key, RecordState.IN_PROGRESS, owner, now_ms, replaced=existing)

    async def fence(self, key: str, *, owner: str, now_ms: int) -> Claim:
        existing = self._records.get(key)
        if existing is not None:
            return Claim(won=False, record=existing)
        return self._put(key, RecordState.FENCED, owner, now_ms, replaced=None)

    def _put(
        self,
        key: str,
        state: RecordState,
        owner: str,
        now_ms: int,
        replaced: IdempotencyRecord | None,
    ) -> Claim:
        record = IdempotencyRecord(
            key=key, state=state, owner=owner, claimed_at_ms=now_ms, updated_ms=now_ms
        )
        self._records[key] = record
        return Claim(won=True, record=record, replaced=replaced)

    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        existing = self._records.get(key)
        if not _held(existing, owner):
            return False
        assert existing is not None
        self._records[key] = replace(
            existing, state=RecordState.DONE, reply=reply, updated_ms=now_ms
        )
        return True

    async def release(self, key: str, *, owner: str) -> bool:
        existing = self._records.get(key)
        if not _held(existing, owner):
            return False
        assert existing is not None
        self._records[key] = replace(existing, state=RecordState.ATTEMPTED)
        return True

    async def accept(self, key: str, *, owner: str, attempt: int, now_ms: int) -> bool:
        existing = self._records.get(key)
        if not _held(existing, owner):
            return False
        assert existing is not None
        self._records[key] = replace(
            existing, state=RecordState.ACCEPTED, heartbeats=0, attempt=attempt, updated_ms=now_ms
        )
        return True

    async def finish(self, key: str, *, reply: Reply, retry: bool, now_ms: int) -> Claim | None:
        pending = (RecordState.ACCEPTED, RecordState.IN_PROGRESS)
        state = RecordState.RETRYABLE if retry else RecordState.DONE
        return self._conclude(key, pending, state, reply, now_ms)

    async def cancel(self, key: str, *, reply: Reply, now_ms: int) -> Claim | None:
        return self._conclude(key, (RecordState.ACCEPTED,), RecordState.DONE, reply, now_ms)

    def _conclude(
        self,
        key: str,
        pending: tuple[RecordState, ...],
        state: RecordState,
        reply: Reply,
        now_ms: int,
    ) -> Claim | None:
        existing = self._records.get(key)
        if existing is None:
            return None
        if existing.state not in pending:
            return Claim(won=False, record=existing)
        record = replace(existing, state=state, reply=reply, updated_ms=now_ms)
        self._records[key] = record
        return Claim(won=True, record=record)

    async def retake(
        self, key: str, *, owner: str, now_ms: int, attempt: int | None
    ) -> Claim | None:
        existing = self._records.get(key)
        if existing is None:
            return None
        if not existing.retakable(attempt):
            return Claim(won=False, record=existing)
        return self._put(key, RecordState.IN_PROGRESS, owner, now_ms, replaced=existing)

    async def heartbeat(self, key: str, *, now_ms: int) -> Claim | None:
        existing = self._records.get(key)
        if existing is None:
            return None
        if existing.state is not RecordState.ACCEPTED:
            return Claim(won=False, record=existing)
        record = replace(existing, heartbeats=existing.heartbeats + 1, updated_ms=now_ms)
        self._records[key] = record
        return Claim(won=True, record=record)

    async def abandon(self, *, owner_prefix: str) -> int:
        dead = [
            record
            for record in self._records.values()
            if record.state is RecordState.IN_PROGRESS and record.owner.startswith(owner_prefix)
        ]
        for record in dead:
            self._records[record.key] = replace(record, state=RecordState.ATTEMPTED)
        return len(dead)


def _held(record: IdempotencyRecord | None, owner: str) -> bool:
    return record is not None and record.state is RecordState.IN_PROGRESS and record.owner == owner
