"""Ownership of sagas by coordinators: leases, claims and the epoch every write checks.

Several coordinators share one PostgreSQL log. Each unfinished saga is owned by one of them
(``sagas.owner``) under an epoch (``sagas.epoch``), and each coordinator holds a lease
(``saga_coordinators.lease_until_ms``, in the database's clock) that it renews while it
lives. Why per-saga ownership rather than partitions of the saga id space:

- **The fence is free.** A write already moves the saga's row (``last_seq``) in one
  statement; checking ``epoch`` there costs nothing, and a claim is an UPDATE of the same row,
  so the row lock orders every claim against every write: a write that loses the race finds
  the new epoch and is refused. Partitions would need a second row (the partition's lease)
  locked in every group commit.
- **Balance is exact.** Claims take sagas in batches with ``FOR UPDATE SKIP LOCKED``, so
  coordinators claiming at once never wait on or take the same saga, and each takes only up
  to its fair share; a coordinator joining later gets its share as the others hand back their
  surplus. Partitions move in chunks of whatever the hash put there.
- **Leases stay cheap.** The lease is one row per coordinator, renewed with one UPDATE every
  ``lease / 4``, whatever the number of sagas; the sagas point at their owner.

A saga is claimable when it is unfinished and has no owner (handed back, or stored before
ownership existed) or its owner's lease has expired. Each claim raises the saga's epoch and
is recorded in ``saga_owners`` with the saga's last seq then, so the log shows that no
coordinator recorded anything for a saga after another claimed it.

On SQLite one coordinator at a time holds the log (``SqlSagaLog`` takes an exclusive lock on
the file at ``join``), so every other owner is dead and claims ignore leases.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass

DEFAULT_LEASE_MS = 10_000
"""How long a coordinator's lease lasts unless renewed (renewed every quarter of it)."""


@dataclass(frozen=True, kw_only=True)
class Member:
    """A coordinator as the log knows it: its lease and its load at the last renewal."""

    coordinator_id: str
    """Unique per process start: ``<name>-<random>``; what ``SagaRecord.owner`` names."""
    name: str
    """The stable name it was started with (``--name``); restarts reuse it."""
    started_ms: int
    renewed_ms: int
    lease_until_ms: int
    """Alive while this is in the future (the database's clock)."""
    stopped_ms: int | None = None
    """When it stopped cleanly and handed its sagas back (None: running, or died)."""
    api_url: str | None = None
    """Where its HTTP API is, as it advertised it."""
    sagas: int = 0
    """Unfinished sagas it owned at the last renewal."""
    in_flight: int = 0
    """Commands it had sent and not had answered at the last renewal."""
    fenced_writes: int = 0
    """Its writes refused because another coordinator had taken the saga over."""


@dataclass(frozen=True, kw_only=True)
class Load:
    """What a coordinator reports with each renewal."""

    sagas: int = 0
    in_flight: int = 0
    fenced_writes: int = 0


@dataclass(frozen=True, slots=True)
class Claim:
    """A saga a coordinator now owns, and the epoch its writes must carry."""

    saga_id: str
    epoch: int


@dataclass(frozen=True, kw_only=True)
class Census:
    """Unfinished sagas and live coordinators: what a fair share is computed from."""

    unfinished: int
    live: int
    now_ms: int
    """The database's clock when counted."""


@dataclass(frozen=True, kw_only=True)
class Audit:
    """What the log shows of ownership over its whole history (``Ownership.audit``)."""

    claims: int
    """Claims of sagas (each raised a saga's epoch and is a ``saga_owners`` row)."""
    taken_over: int
    """Sagas claimed at least once from another coordinator (dead, paused past its lease, or
    acting for an operator), rather than unowned."""
    driven_by_two: int
    """Sagas with an event recorded under an older epoch after a claim at a newer one: a
    coordinator's decision after another had taken the saga over. Fencing keeps this 0."""


def overlaps(claims: list[tuple[int, int]], epochs: list[int | None]) -> bool:
    """Whether a saga's log shows two owners' decisions interleaved: ``claims`` are its
    (after_seq, epoch) claims, ``epochs[i]`` the epoch event seq ``i + 1`` was written under
    (None: before ownership existed)."""
    for after_seq, epoch in claims:
        for written in epochs[after_seq:]:
            if written is not None and written < epoch:
                return True
    return False


class Ownership(ABC):
    """The ownership operations of a saga log (``SagaLog.ownership``)."""

    exclusive: bool = False
    """Only one coordinator can use this log at a time (SQLite, in-process logs)."""

    @abstractmethod
    async def join(
        self, coordinator_id: str, name: str, lease_ms: int, api_url: str | None = None
    ) -> None:
        """Register a coordinator with a fresh lease. Any earlier coordinator of the same
        name is taken to be dead (a restart): its lease ends now, so its sagas can be claimed
        at once. On SQLite, LogError if another process holds the log."""

    @abstractmethod
    async def renew(self, coordinator_id: str, lease_ms: int, load: Load) -> bool:
        """Extend the lease; False (and nothing changed) if it had expired or ended."""

    @abstractmethod
    async def leave(self, coordinator_id: str) -> int:
        """End the lease and hand back every unfinished saga it owns; returns how many."""

    @abstractmethod
    async def claim(self, coordinator_id: str, limit: int) -> list[Claim]:
        """Take up to ``limit`` claimable sagas (no owner, or a dead one), oldest first."""

    @abstractmethod
    async def take(self, coordinator_id: str, saga_id: str) -> Claim | None:
        """Take one unfinished saga whatever its owner (an operator acts on it here): its
        owner's next write is fenced. None if there is no such unfinished saga."""

    @abstractmethod
    async def release(self, coordinator_id: str, saga_ids: Collection[str]) -> int:
        """Hand back these sagas (if still owned by ``coordinator_id``) for others to claim."""

    @abstractmethod
    async def members(self, *, include_ended_ms: int = 0) -> list[Member]:
        """Live coordinators, and those whose lease ended in the last ``include_ended_ms``."""

    @abstractmethod
    async def census(self) -> Census:
        """How many sagas are unfinished and how many coordinators are live."""

    @abstractmethod
    async def audit(self) -> Audit:
        """Claims, take-overs and interleaved owners, from the log (``saga soak`` prints it)."""

    @abstractmethod
    async def owned(self, coordinator_id: str) -> list[Claim]:
        """The unfinished sagas ``coordinator_id`` owns (after a claim whose outcome was lost,
        the coordinator adopts what it finds here)."""
