"""SqlIdempotencyStore: the IdempotencyStore on SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg).

One table, ``saga_idempotency``, and a one-row ``saga_idempotency_store`` holding the store's
identity, made and upgraded at ``open()`` by Alembic migrations (``saga.participant.migrate``).
A long-running command's record is ``accepted``; its completion (``finish``), its
compensation's ``cancel`` and a ``heartbeat`` are each one conditional ``UPDATE ... WHERE
state = 'accepted'``, so of a completion and a compensation racing (from any processes) exactly
one changes the record: PostgreSQL re-checks the condition once the row lock is free, and
SQLite takes its write lock first.

A claim is a primary-key insert (``INSERT ... ON CONFLICT DO NOTHING RETURNING``), so exactly
one of several processes wins a key; an attempted or stale claim is taken over with a
compare-and-set ``UPDATE`` on its owner, state and claim time.

``transaction()`` is the transactional inbox: the handler writes its effect on the store's
connection, and the idempotency record is completed in the same transaction, so a committed
effect is always recorded (and never run again) and an uncommitted one never is.

Driver errors leave as ``IdempotencyStoreError``, with the driver's error as the cause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from saga.errors import IdempotencyStoreError
from saga.participant.migrate import upgrade
from saga.participant.store import (
    Claim,
    CompletionTransaction,
    EffectTransaction,
    IdempotencyRecord,
    IdempotencyStore,
    RecordState,
)
from saga.protocol import Reply
from saga.sqlconnect import SqliteSetup, UrlRules, database_url
from saga.sqlpool import PoolOptions, pool_problem, retrying

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

metadata = sa.MetaData()

idempotency_table = sa.Table(
    "saga_idempotency",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("claimed_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("heartbeats", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("attempt", sa.Integer, nullable=True),
)

identity_table = sa.Table(
    "saga_idempotency_store",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("identity", sa.String(64), nullable=False),
)
"""One row: a random id made when the store's tables are first created."""

_URL_RULES = UrlRules(
    user="SqlIdempotencyStore",
    in_memory_instead="InMemoryIdempotencyStore",
    any_driver=True,
    require_database=False,
)
# NORMAL (not the log's FULL) and BEGIN IMMEDIATE for every transaction, as before.
_SQLITE = SqliteSetup(synchronous="NORMAL", busy_timeout=timedelta(seconds=10))
_TAKE_RETRIES = 5


def async_database_url(url: str | URL) -> URL:
    """``sqlite:///...`` and ``postgresql://...`` (or ``postgres://``) with their async drivers.

    IdempotencyStoreError for anything else, or for in-memory SQLite.
    """
    try:
        return database_url(url, _URL_RULES)
    except ValueError as exc:
        raise IdempotencyStoreError(f"SqlIdempotencyStore: {exc}") from exc


class SqlIdempotencyStore(IdempotencyStore):
    """Idempotency records in a SQL table; replicas of one service must share one database.

    ``url`` is a SQLite or PostgreSQL URL (the store makes and disposes its own engine, with
    ``pool`` bounding the connections it holds, by default one while idle and at most five;
    ``engine_options`` go to SQLAlchemy's ``create_async_engine`` after it), or an
    ``AsyncEngine`` the caller owns (for example the one the service's business tables use,
    so the store and the handlers share one pool and one transaction).
    """

    def __init__(
        self,
        url: str | URL | AsyncEngine,
        *,
        pool: PoolOptions | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self._given: AsyncEngine | None = None
        if isinstance(url, AsyncEngine):
            self._given = url
            self.url = url.url
        else:
            self.url = async_database_url(url)
        self.pool = pool or PoolOptions()
        """The connection pool's bounds (for an engine the store makes)."""
        self._engine_options = {**self.pool.engine_options(), **(engine_options or {})}
        self._engine: AsyncEngine | None = None
        self._identity: str | None = None
        self._open_lock = asyncio.Lock()

    @property
    def identity(self) -> str | None:
        """The random id stored in this database at its first ``open()`` (None before)."""
        return self._identity

    @property
    def joins_transactions(self) -> bool:
        return True

    async def open(self) -> None:
        """Create the engine, and create or upgrade the tables (migrations). Idempotent;
        called lazily on first use."""
        async with self._open_lock:
            if self._engine is not None:
                return
            engine = self._given
            if engine is None:
                engine = create_async_engine(self.url, **self._engine_options)
                _SQLITE.install(engine)
            try:
                # upgrade() is one transaction and a no-op at head, so trying again is safe.
                await self._retry(lambda: upgrade(engine))
                self._identity = await self._retry(lambda: _identity(engine))
            except BaseException:
                if self._given is None:
                    await engine.dispose()
                raise
            self._engine = engine

    async def _retry(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``operation``, trying again (tenacity, bounded) while SQLite is busy or the
        connection is lost or refused. What still fails is an IdempotencyStoreError (naming
        the pool's limit when no connection could be had), the driver's error its cause.

        Only for operations that are safe to repeat: a read, or a write whose transaction
        cannot have committed when the error came (SQLite busy), or that is idempotent.
        """
        try:
            async for attempt in retrying(logger, f"idempotency store {self.url.database}"):
                with attempt:
                    return await operation()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            problem = pool_problem(exc, self.pool) or str(exc)
            raise IdempotencyStoreError(f"idempotency store: {problem}") from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and self._given is None:
            await engine.dispose()

    async def _ready(self) -> AsyncEngine:
        if self._engine is None:
            await self.open()
        assert self._engine is not None
        return self._engine

    async def get(self, key: str) -> IdempotencyRecord | None:
        engine = await self._ready()

        async def read() -> IdempotencyRecord | None:
            async with engine.connect() as conn:
                return await _select(conn, key)

        return await self._retry(read)

    # Each write below is one transaction, tried again (``_retry``) while SQLite is busy or
    # the connection is lost. A first try may have committed before its connection dropped,
    # so each recognises its own earlier write (same owner) as success: repeating is safe.

    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        engine = await self._ready()
        return await self._retry(lambda: self._claim(engine, key, owner, now_ms, stale_before_ms))

    async def _claim(
        self, engine: AsyncEngine, key: str, owner: str, now_ms: int, stale_before_ms: int
    ) -> Claim:
        t = idempotency_table
        mine, values = _new_record(key, RecordState.IN_PROGRESS, owner, now_ms)
        for _ in range(_TAKE_RETRIES):
            async with engine.begin() as conn:
                # The insert comes first so SQLite takes its write lock before any read.
                inserted = await conn.execute(_insert_if_absent(engine, values))
                if inserted.first() is not None:
                    return Claim(won=True, record=mine)
                existing = await _select(conn, key)
                if existing is None:
                    continue  # deleted between our insert and select: try again
                if existing.owner == owner and existing.state is RecordState.IN_PROGRESS:
                    return Claim(won=True, record=existing)  # our own earlier try committed
                if not existing.claimable(stale_before_ms):
                    return Claim(won=False, record=existing)
                # Compare-and-set on the record we saw: of several takers, one matches.
                taken = await conn.execute(
                    sa.update(t)
                    .where(
                        t.c.key == key,
                        t.c.state == existing.state.value,
                        t.c.owner == existing.owner,
                        t.c.claimed_at_ms == existing.claimed_at_ms,
                    )
                    .values(values)
                    .returning(t.c.key)
                )
                if taken.first() is not None:
                    return Claim(won=True, record=mine, replaced=existing)
                current = await _select(conn, key)
                if current is not None and not current.claimable(stale_before_ms):
                    return Claim(won=False, record=current)
        raise IdempotencyStoreError(f"could not claim idempotency key {key!r}: it keeps changing")

    async def fence(self, key: str, *, owner: str, now_ms: int) -> Claim:
        engine = await self._ready()
        return await self._retry(lambda: self._fence(engine, key, owner, now_ms))

    async def _fence(self, engine: AsyncEngine, key: str, owner: str, now_ms: int) -> Claim:
        mine, values = _new_record(key, RecordState.FENCED, owner, now_ms)
        for _ in range(_TAKE_RETRIES):
            async with engine.begin() as conn:
                inserted = await conn.execute(_insert_if_absent(engine, values))
                if inserted.first() is not None:
                    return Claim(won=True, record=mine)
                existing = await _select(conn, key)
                if existing is not None:
                    mine_already = existing.owner == owner and existing.state is RecordState.FENCED
                    return Claim(won=mine_already, record=existing)
        raise IdempotencyStoreError(f"could not fence idempotency key {key!r}: it keeps changing")

    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        engine = await self._ready()

        async def complete_once() -> bool:
            async with engine.begin() as conn:
                if await _complete(conn, key, owner, reply, now_ms):
                    return True
                return await _was(conn, key, owner, RecordState.DONE)

        return await self._retry(complete_once)

    async def release(self, key: str, *, owner: str) -> bool:
        engine = await self._ready()
        t = idempotency_table

        async def release_once() -> bool:
            async with engine.begin() as conn:
                result = await conn.execute(
                    sa.update(t)
                    .where(*_held_by(key, owner))
                    .values(state=RecordState.ATTEMPTED.value)
                    .returning(t.c.key)
                )
                if result.first() is not None:
                    return True
                return await _was(conn, key, owner, RecordState.ATTEMPTED)

        return await self._retry(release_once)

    async def accept(self, key: str, *, owner: str, attempt: int, now_ms: int) -> bool:
        engine = await self._ready()

        async def accept_once() -> bool:
            async with engine.begin() as conn:
                if await _accept(conn, key, owner, attempt, now_ms):
                    return True
                return await _was(conn, key, owner, RecordState.ACCEPTED)

        return await self._retry(accept_once)

    # A first try of finish, cancel or heartbeat may have committed before its connection
    # dropped: a repeat then reports ``won=False`` with the record it wrote (the caller
    # recognises its own reply), and a repeated heartbeat counts twice (it only extends a
    # deadline).

    async def finish(self, key: str, *, reply: Reply, retry: bool, now_ms: int) -> Claim | None:
        engine = await self._ready()
        state = RecordState.RETRYABLE if retry else RecordState.DONE
        pending = (RecordState.ACCEPTED, RecordState.IN_PROGRESS)
        return await self._retry(lambda: _conclude(engine, key, pending, state, reply, now_ms))

    async def cancel(self, key: str, *, reply: Reply, now_ms: int) -> Claim | None:
        engine = await self._ready()
        pending = (RecordState.ACCEPTED,)
        return await self._retry(
            lambda: _conclude(engine, key, pending, RecordState.DONE, reply, now_ms)
        )

    async def retake(
        self, key: str, *, owner: str, now_ms: int, attempt: int | None
    ) -> Claim | None:
        engine = await self._ready()
        t = idempotency_table
        mine, values = _new_record(key, RecordState.IN_PROGRESS, owner, now_ms)

        async def retake_once() -> Claim | None:
            async with engine.begin() as conn:
                existing = await _select(conn, key)
                if existing is None:
                    return None
                if existing.owner == owner and existing.state is RecordState.IN_PROGRESS:
                    return Claim(won=True, record=existing)  # our own earlier try committed
                if not existing.retakable(attempt):
                    return Claim(won=False, record=existing)
                # Compare-and-set on the record we saw: of several takers, one matches.
                taken = await conn.execute(
                    sa.update(t)
                    .where(
                        t.c.key == key,
                        t.c.state == RecordState.RETRYABLE.value,
                        t.c.updated_ms == existing.updated_ms,
                        t.c.owner == existing.owner,
                    )
                    .values(values)
                    .returning(t.c.key)
                )
                if taken.first() is not None:
                    return Claim(won=True, record=mine, replaced=existing)
                current = await _select(conn, key)
                return None if current is None else Claim(won=False, record=current)

        return await self._retry(retake_once)

    async def heartbeat(self, key: str, *, now_ms: int) -> Claim | None:
        engine = await self._ready()
        t = idempotency_table

        async def beat_once() -> Claim | None:
            async with engine.begin() as conn:
                counted = await conn.execute(
                    sa.update(t)
                    .where(t.c.key == key, t.c.state == RecordState.ACCEPTED.value)
                    .values(heartbeats=t.c.heartbeats + 1, updated_ms=now_ms)
                    .returning(t.c.key)
                )
                won = counted.first() is not None
                record = await _select(conn, key)
            return None if record is None else Claim(won=won, record=record)

        return await self._retry(beat_once)

    async def abandon(self, *, owner_prefix: str) -> int:
        engine = await self._ready()
        t = idempotency_table
        escaped = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

        async def abandon_once() -> int:
            async with engine.begin() as conn:
                result = await conn.execute(
                    sa.update(t)
                    .where(
                        t.c.state == RecordState.IN_PROGRESS.value,
                        t.c.owner.like(f"{escaped}%", escape="\\"),
                    )
                    .values(state=RecordState.ATTEMPTED.value)
                    .returning(t.c.key)
                )
                return len(result.all())

        return await self._retry(abandon_once)

    @asynccontextmanager
    async def transaction(self, key: str, *, owner: str) -> AsyncIterator[EffectTransaction]:
        engine = await self._ready()
        with _store_errors("could not begin a transaction"):
            conn = await engine.connect()
        try:
            with _store_errors("could not begin a transaction"):
                await conn.begin()
            tx = _SqlEffectTransaction(conn, key, owner)
            try:
                yield tx
            except BaseException:
                await conn.rollback()
                raise
            with _store_errors("could not commit the effect and its record"):
                if tx.discarded:
                    await conn.rollback()
                else:
                    await conn.commit()
        finally:
            await conn.close()

    @asynccontextmanager
    async def completion_transaction(self, key: str) -> AsyncIterator[CompletionTransaction]:
        engine = await self._ready()
        with _store_errors("could not begin a transaction"):
            conn = await engine.connect()
        try:
            with _store_errors("could not begin a transaction"):
                await conn.begin()
                # PostgreSQL: lock the row, so a compensation's cancel waits for this
                # transaction to end (the store's SQLite engine holds the write lock from
                # BEGIN). On any engine the conditional UPDATE in ``finish`` decides.
                record = await _select(conn, key, for_update=True)
            tx = _SqlCompletionTransaction(conn, key, record)
            try:
                yield tx
            except BaseException:
                await conn.rollback()
                raise
            with _store_errors("could not commit the effect and its completion"):
                await conn.commit()
        finally:
            await conn.close()


@contextmanager
def _store_errors(what: str) -> Iterator[None]:
    """Driver errors as IdempotencyStoreError, the driver's error chained as the cause."""
    try:
        yield
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise IdempotencyStoreError(f"idempotency store: {what}: {exc}") from exc


class _SqlEffectTransaction(EffectTransaction):
    def __init__(self, conn: AsyncConnection, key: str, owner: str) -> None:
        self._conn = conn
        self._key = key
        self._owner = owner
        self.discarded = False

    @property
    def connection(self) -> AsyncConnection:
        return self._conn

    async def complete(self, reply: Reply, *, now_ms: int) -> bool:
        return await _complete(self._conn, self._key, self._owner, reply, now_ms)

    async def accept(self, *, attempt: int, now_ms: int) -> bool:
        return await _accept(self._conn, self._key, self._owner, attempt, now_ms)

    def discard(self) -> None:
        self.discarded = True


class _SqlCompletionTransaction(CompletionTransaction):
    def __init__(self, conn: AsyncConnection, key: str, record: IdempotencyRecord | None) -> None:
        self._conn = conn
        self._key = key
        self._record = record

    @property
    def connection(self) -> AsyncConnection:
        return self._conn

    @property
    def record(self) -> IdempotencyRecord | None:
        return self._record

    async def finish(self, reply: Reply, *, retry: bool, now_ms: int) -> Claim | None:
        state = RecordState.RETRYABLE if retry else RecordState.DONE
        pending = (RecordState.ACCEPTED, RecordState.IN_PROGRESS)
        found = await _conclude_on(self._conn, self._key, pending, state, reply, now_ms)
        if found is not None:
            self._record = found.record
        return found


async def _accept(conn: AsyncConnection, key: str, owner: str, attempt: int, now_ms: int) -> bool:
    t = idempotency_table
    result = await conn.execute(
        sa.update(t)
        .where(*_held_by(key, owner))
        .values(state=RecordState.ACCEPTED.value, heartbeats=0, attempt=attempt, updated_ms=now_ms)
        .returning(t.c.key)
    )
    return result.first() is not None


async def _conclude(
    engine: AsyncEngine,
    key: str,
    pending: tuple[RecordState, ...],
    state: RecordState,
    reply: Reply,
    now_ms: int,
) -> Claim | None:
    """One conditional UPDATE: ``key`` moves to ``state`` with ``reply`` only if it is still
    in one of the ``pending`` states, so of several racing writers exactly one wins."""
    async with engine.begin() as conn:
        return await _conclude_on(conn, key, pending, state, reply, now_ms)


async def _conclude_on(
    conn: AsyncConnection,
    key: str,
    pending: tuple[RecordState, ...],
    state: RecordState,
    reply: Reply,
    now_ms: int,
) -> Claim | None:
    t = idempotency_table
    changed = await conn.execute(
        sa.update(t)
        .where(t.c.key == key, t.c.state.in_([p.value for p in pending]))
        .values(state=state.value, reply=_reply_text(reply), updated_ms=now_ms)
        .returning(t.c.key)
    )
    won = changed.first() is not None
    record = await _select(conn, key)
    return None if record is None else Claim(won=won, record=record)


def _reply_text(reply: Reply) -> str:
    return json.dumps(reply.to_json(), separators=(",", ":"))


async def _was(conn: AsyncConnection, key: str, owner: str, state: RecordState) -> bool:
    """Whether ``key`` is in ``state`` by ``owner``: an earlier try of this write committed."""
    found = await _select(conn, key)
    return found is not None and found.owner == owner and found.state is state


async def _complete(conn: AsyncConnection, key: str, owner: str, reply: Reply, now_ms: int) -> bool:
    t = idempotency_table
    result = await conn.execute(
        sa.update(t)
        .where(*_held_by(key, owner))
        .values(
            state=RecordState.DONE.value,
            reply=_reply_text(reply),
            updated_ms=now_ms,
        )
        .returning(t.c.key)
    )
    return result.first() is not None


def _new_record(
    key: str, state: RecordState, owner: str, now_ms: int
) -> tuple[IdempotencyRecord, dict[str, Any]]:
    record = IdempotencyRecord(
        key=key, state=state, owner=owner, claimed_at_ms=now_ms, updated_ms=now_ms
    )
    values: dict[str, Any] = {
        "key": key,
        "state": state.value,
        "owner": owner,
        "reply": None,
        "claimed_at_ms": now_ms,
        "updated_ms": now_ms,
        "heartbeats": 0,
        "attempt": None,
    }
    return record, values


def _held_by(key: str, owner: str) -> tuple[sa.ColumnElement[bool], ...]:
    t = idempotency_table
    return (t.c.key == key, t.c.state == RecordState.IN_PROGRESS.value, t.c.owner == owner)


def _insert_if_absent(engine: AsyncEngine, values: dict[str, Any]) -> sa.Executable:
    t = idempotency_table
    if engine.dialect.name == "postgresql":
        pg = postgresql.insert(t).values(values)
        return pg.on_conflict_do_nothing(index_elements=[t.c.key]).returning(t.c.key)
    lite = sqlite.insert(t).values(values)
    return lite.on_conflict_do_nothing(index_elements=[t.c.key]).returning(t.c.key)


async def _select(
    conn: AsyncConnection, key: str, *, for_update: bool = False
) -> IdempotencyRecord | None:
    t = idempotency_table
    query = sa.select(t).where(t.c.key == key)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    reply_text: str | None = row.reply
    return IdempotencyRecord(
        key=row.key,
        state=RecordState(row.state),
        owner=row.owner,
        claimed_at_ms=row.claimed_at_ms,
        updated_ms=row.updated_ms,
        reply=Reply.from_json(json.loads(reply_text)) if reply_text is not None else None,
        heartbeats=row.heartbeats,
        attempt=row.attempt,
    )


async def _identity(engine: AsyncEngine) -> str:
    """The store's identity row, made by whichever process opens the database first."""
    t = identity_table
    values = {"id": 1, "identity": uuid.uuid4().hex}
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    async with engine.begin() as conn:
        await conn.execute(insert(t).values(values).on_conflict_do_nothing())
        found: str = (await conn.execute(sa.select(t.c.identity).where(t.c.id == 1))).scalar_one()
    return found
