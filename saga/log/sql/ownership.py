"""Ownership in SQL (see ``saga.log.ownership``): leases in ``saga_coordinators``, claims as
one statement each, timed by the database's clock.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``, so coordinators claiming together never
wait for each other nor take the same saga, and records each claim in ``saga_owners`` in the
same statement. SQLite has one coordinator at a time: ``join`` takes an exclusive ``flock``
on the log file (released by the kernel when the process dies, however it dies), and claims
ignore leases, since every other owner is dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Row, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from saga.errors import LogError
from saga.log.ownership import Audit, Census, Claim, Load, Member, Ownership
from saga.log.sql.schema import UNFINISHED_SQL, sagas
from saga.sqlconnect import WRITE

FORGET_AFTER_MS = 7 * 24 * 3600 * 1000
"""A coordinator gone this long, owning nothing unfinished, is deleted at the next join."""

_NOW_PG = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
_NOW_SQLITE = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

_MOVE_TO_ME_PG = f"""
, claimed AS (
    UPDATE sagas AS s SET owner = :me, epoch = s.epoch + 1
    FROM picked WHERE s.saga_id = picked.saga_id
    RETURNING s.saga_id, s.epoch, s.last_seq, picked.previous
)
INSERT INTO saga_owners (saga_id, epoch, owner, previous, after_seq, at_ms)
SELECT saga_id, epoch, :me, previous, last_seq, {_NOW_PG} FROM claimed
RETURNING saga_id, epoch
"""
"""After a ``picked`` CTE (the rows to claim, locked, and their previous owner): move them to
``:me`` at the next epoch and record each claim, in the same statement."""

_CLAIM_PG = f"""
WITH picked AS (
    SELECT s.saga_id, s.owner AS previous FROM sagas AS s
    WHERE s.{UNFINISHED_SQL}
      AND (s.owner IS NULL OR s.owner IN (
          SELECT c.coordinator_id FROM saga_coordinators AS c
          WHERE c.lease_until_ms < {_NOW_PG} AND c.coordinator_id <> :me))
    ORDER BY s.created_ms, s.saga_id
    LIMIT :limit
    FOR UPDATE OF s SKIP LOCKED
){_MOVE_TO_ME_PG}"""

_TAKE_PG = f"""
WITH picked AS (
    SELECT saga_id, owner AS previous FROM sagas
    WHERE saga_id = :saga_id AND {UNFINISHED_SQL}
    FOR UPDATE
){_MOVE_TO_ME_PG}"""


def _member(row: Row[Any]) -> Member:
    return Member(
        coordinator_id=row.coordinator_id,
        name=row.name,
        started_ms=row.started_ms,
        renewed_ms=row.renewed_ms,
        lease_until_ms=row.lease_until_ms,
        stopped_ms=row.stopped_ms,
        api_url=row.api_url,
        sagas=row.sagas,
        in_flight=row.in_flight,
        fenced_writes=row.fenced_writes,
    )


class SqlOwnership(Ownership):
    """Ownership for a ``SqlSagaLog``'s database, whose connections ``run`` lends; on SQLite
    (``sqlite``) a lock file beside ``log_file`` keeps the log to one coordinator."""

    def __init__(
        self,
        run: Callable[[str, Callable[[AsyncConnection], Awaitable[Any]], bool], Awaitable[Any]],
        *,
        sqlite: bool,
        log_file: str | None,
    ) -> None:
        self._run = run
        self._lock_path = (
            None
            if log_file is None
            else Path(f"{Path(log_file).expanduser().resolve()}.coordinator-lock")
        )
        self._lock: IO[bytes] | None = None
        self.exclusive = sqlite
        self._now = _NOW_SQLITE if self.exclusive else _NOW_PG

    # -- SQLite's one coordinator ----------------------------------------------------------

    def _hold_file(self) -> None:
        """Take the SQLite log's coordinator lock, or LogError naming who holds it.

        The lock is a file of its own beside the log (SQLite's POSIX locks on the log file
        would be dropped if this process closed any other descriptor of it), removed at
        release. A holder removes it before unlocking, so whoever locked a file must check
        that it is still the one at the path (else it locked a removed file: open again).
        """
        path = self._lock_path
        if path is None or self._lock is not None:
            return
        for _ in range(10):
            handle = open(path, "a+b")  # noqa: SIM115 (held until release_file)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read(64).decode(errors="replace").strip() or "another process"
                handle.close()
                raise LogError(
                    f"the SQLite log {path.with_suffix('')} is in use by another coordinator"
                    f" ({holder}): SQLite allows one coordinator at a time; use PostgreSQL"
                    " (--db postgresql://...) to run several"
                ) from None
            try:
                same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                handle.close()  # the holder before us removed it as we opened it
                continue
            handle.truncate(0)
            handle.write(f"pid {os.getpid()}".encode())
            handle.flush()
            self._lock = handle
            return
        raise LogError(f"could not take the coordinator lock {path}")

    def release_file(self) -> None:
        """Let another coordinator open the SQLite log (at leave and close)."""
        handle, self._lock = self._lock, None
        if handle is None:
            return
        if self._lock_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)  # while still locked: see _hold_file
        handle.close()  # closing the descriptor drops the flock

    # -- the operations --------------------------------------------------------------------

    async def _write(
        self, action: str, body: Callable[[AsyncConnection], Awaitable[Any]], retry: bool = True
    ) -> Any:
        """``body`` in one write transaction; tried again on a transient error if ``retry``
        (only for what is the same done twice: a claim is not)."""

        async def transaction(conn: AsyncConnection) -> Any:
            await conn.execution_options(**WRITE)
            async with conn.begin():
                return await body(conn)

        return await self._run(action, transaction, retry)

    async def _read(self, action: str, body: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        return await self._run(action, body, True)

    async def join(
        self, coordinator_id: str, name: str, lease_ms: int, api_url: str | None = None
    ) -> None:
        self._hold_file()

        async def body(conn: AsyncConnection) -> None:
            # Forget coordinators gone for a week that own nothing unfinished.
            await conn.execute(
                text(
                    "DELETE FROM saga_coordinators AS c"
                    f" WHERE c.lease_until_ms < {self._now} - :keep AND NOT EXISTS ("
                    "  SELECT 1 FROM sagas AS s"
                    f"  WHERE s.owner = c.coordinator_id AND s.{UNFINISHED_SQL})"
                ),
                {"keep": FORGET_AFTER_MS},
            )
            # A coordinator restarted under its name: the one before it is dead.
            await conn.execute(
                text(
                    f"UPDATE saga_coordinators SET lease_until_ms = {self._now} - 1"
                    f" WHERE name = :name AND lease_until_ms >= {self._now}"
                ),
                {"name": name},
            )
            await conn.execute(
                text(
                    "INSERT INTO saga_coordinators (coordinator_id, name, started_ms,"
                    " renewed_ms, lease_until_ms, api_url)"
                    f" VALUES (:id, :name, {self._now}, {self._now}, {self._now} + :lease,"
                    " :api_url)"
                ),
                {"id": coordinator_id, "name": name, "lease": lease_ms, "api_url": api_url},
            )

        try:
            await self._write("join", body)
        except BaseException:
            self.release_file()
            raise

    async def renew(self, coordinator_id: str, lease_ms: int, load: Load) -> bool:
        # On SQLite the file's lock, not the lease, keeps others out: a lease that ran out
        # while the process was suspended is still this coordinator's.
        alive = "" if self.exclusive else f" AND lease_until_ms >= {self._now}"

        async def body(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                text(
                    f"UPDATE saga_coordinators SET lease_until_ms = {self._now} + :lease,"
                    f" renewed_ms = {self._now}, sagas = :sagas, in_flight = :in_flight,"
                    " fenced_writes = :fenced"
                    f" WHERE coordinator_id = :id{alive}"
                ),
                {
                    "id": coordinator_id,
                    "lease": lease_ms,
                    "sagas": load.sagas,
                    "in_flight": load.in_flight,
                    "fenced": load.fenced_writes,
                },
            )
            return bool(result.rowcount == 1)

        return bool(await self._write("lease renewal", body))

    async def leave(self, coordinator_id: str) -> int:
        async def body(conn: AsyncConnection) -> int:
            result = await conn.execute(
                text(
                    "UPDATE sagas SET owner = NULL, epoch = epoch + 1"
                    f" WHERE owner = :id AND {UNFINISHED_SQL}"
                ),
                {"id": coordinator_id},
            )
            await conn.execute(
                text(
                    f"UPDATE saga_coordinators SET lease_until_ms = {self._now} - 1,"
                    f" stopped_ms = {self._now}, sagas = 0, in_flight = 0"
                    " WHERE coordinator_id = :id"
                ),
                {"id": coordinator_id},
            )
            return int(result.rowcount)

        try:
            return int(await self._write("leave", body))
        finally:
            self.release_file()

    async def claim(self, coordinator_id: str, limit: int) -> list[Claim]:
        if limit <= 0:
            return []
        if self.exclusive:
            return await self._claim_sqlite(coordinator_id, limit, None)

        async def body(conn: AsyncConnection) -> list[Claim]:
            result = await conn.execute(
                text(_CLAIM_PG),
                {"me": coordinator_id, "limit": limit},
            )
            return [Claim(row.saga_id, row.epoch) for row in result]

        # Not retried: a try whose COMMIT was lost may have claimed sagas; the coordinator
        # finds those with ``owned`` after a failed claim.
        return list(await self._write("claim", body, retry=False))

    async def take(self, coordinator_id: str, saga_id: str) -> Claim | None:
        if self.exclusive:
            taken = await self._claim_sqlite(coordinator_id, 1, saga_id)
            return taken[0] if taken else None

        async def body(conn: AsyncConnection) -> Claim | None:
            result = await conn.execute(text(_TAKE_PG), {"me": coordinator_id, "saga_id": saga_id})
            row = result.one_or_none()
            return None if row is None else Claim(row.saga_id, row.epoch)

        found: Claim | None = await self._write("take", body)
        return found

    async def _claim_sqlite(
        self, coordinator_id: str, limit: int, saga_id: str | None
    ) -> list[Claim]:
        """SQLite's claim: every other owner is dead (this process holds the log's lock)."""

        async def body(conn: AsyncConnection) -> list[Claim]:
            where = "saga_id = :saga_id" if saga_id is not None else "owner IS NOT :me"
            picked = (
                await conn.execute(
                    text(
                        f"SELECT saga_id, owner, last_seq, epoch FROM sagas"
                        f" WHERE {where} AND {UNFINISHED_SQL}"
                        " ORDER BY created_ms, saga_id LIMIT :limit"
                    ),
                    {"me": coordinator_id, "saga_id": saga_id, "limit": limit},
                )
            ).all()
            claims = [Claim(row.saga_id, row.epoch + 1) for row in picked]
            if not picked:
                return claims
            await conn.execute(
                text("UPDATE sagas SET owner = :me, epoch = :epoch WHERE saga_id = :saga_id"),
                [{"me": coordinator_id, "epoch": c.epoch, "saga_id": c.saga_id} for c in claims],
            )
            await conn.execute(
                text(
                    "INSERT INTO saga_owners (saga_id, epoch, owner, previous, after_seq, at_ms)"
                    f" VALUES (:saga_id, :epoch, :me, :previous, :after_seq, {self._now})"
                ),
                [
                    {
                        "saga_id": row.saga_id,
                        "epoch": row.epoch + 1,
                        "me": coordinator_id,
                        "previous": row.owner,
                        "after_seq": row.last_seq,
                    }
                    for row in picked
                ],
            )
            return claims

        return list(await self._write("claim", body, retry=False))

    async def release(self, coordinator_id: str, saga_ids: Collection[str]) -> int:
        ids = list(saga_ids)
        if not ids:
            return 0

        async def body(conn: AsyncConnection) -> int:
            released = 0
            for start in range(0, len(ids), 500):
                statement = (
                    update(sagas)
                    .where(
                        sagas.c.saga_id.in_(ids[start : start + 500]),
                        sagas.c.owner == coordinator_id,
                        text(UNFINISHED_SQL),
                    )
                    .values(owner=None, epoch=sagas.c.epoch + 1)
                )
                released += (await conn.execute(statement)).rowcount
            return released

        return int(await self._write("release", body))

    async def members(self, *, include_ended_ms: int = 0) -> list[Member]:
        async def body(conn: AsyncConnection) -> list[Member]:
            result = await conn.execute(
                text(
                    "SELECT * FROM saga_coordinators"
                    f" WHERE lease_until_ms >= {self._now} - :ended"
                    " ORDER BY name, started_ms"
                ),
                {"ended": include_ended_ms},
            )
            return [_member(row) for row in result]

        return list(await self._read("members", body))

    async def census(self) -> Census:
        async def body(conn: AsyncConnection) -> Census:
            row = (
                await conn.execute(
                    text(
                        f"SELECT (SELECT count(*) FROM sagas WHERE {UNFINISHED_SQL}) AS unfinished,"
                        " (SELECT count(*) FROM saga_coordinators"
                        f" WHERE lease_until_ms >= {self._now}) AS live, {self._now} AS now_ms"
                    )
                )
            ).one()
            return Census(unfinished=row.unfinished, live=row.live, now_ms=row.now_ms)

        found: Census = await self._read("census", body)
        return found

    async def audit(self) -> Audit:
        async def body(conn: AsyncConnection) -> Audit:
            row = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM saga_owners) AS claims,"
                        " (SELECT count(DISTINCT saga_id) FROM saga_owners"
                        "  WHERE previous IS NOT NULL) AS taken_over,"
                        " (SELECT count(DISTINCT e.saga_id) FROM saga_owners AS o"
                        "  JOIN saga_events AS e ON e.saga_id = o.saga_id"
                        "  AND e.seq > o.after_seq AND e.epoch < o.epoch) AS driven_by_two"
                    )
                )
            ).one()
            return Audit(
                claims=row.claims, taken_over=row.taken_over, driven_by_two=row.driven_by_two
            )

        found: Audit = await self._read("audit", body)
        return found

    async def owned(self, coordinator_id: str) -> list[Claim]:
        async def body(conn: AsyncConnection) -> list[Claim]:
            result = await conn.execute(
                text(f"SELECT saga_id, epoch FROM sagas WHERE owner = :me AND {UNFINISHED_SQL}"),
                {"me": coordinator_id},
            )
            return [Claim(row.saga_id, row.epoch) for row in result]

        return list(await self._read("owned sagas", body))
