"""SqlIdempotencyStore: the IdempotencyStore on SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg).

One table, ``saga_idempotency``, created at ``open()``. A claim is a primary-key insert
(``INSERT ... ON CONFLICT DO NOTHING RETURNING``), so exactly one of several processes wins a
key; a stale claim is taken over with a compare-and-set ``UPDATE`` on its owner and claim time.
Independent of the saga log's schema: a participant's database is its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from saga.participant.store import Claim, IdempotencyRecord, IdempotencyStore, RecordState
from saga.protocol import Reply
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
)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
)
_TAKE_RETRIES = 5


def async_database_url(url: str | URL) -> URL:
    """``sqlite:///...`` and ``postgresql://...`` (or ``postgres://``) with their async drivers."""
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise ValueError(f"SqlIdempotencyStore supports SQLite and PostgreSQL, not {backend!r}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError(
            "SqlIdempotencyStore needs a SQLite file (each pooled connection would see its own"
            " in-memory database); use InMemoryIdempotencyStore instead"
        )
    return parsed.set(drivername=driver)


class SqlIdempotencyStore(IdempotencyStore):
    """Idempotency records in a SQL table; safe to share between replicas of one service.

    ``pool`` bounds the connections held (``PoolOptions``: by default one while idle, at most
    five); ``engine_options`` are passed to SQLAlchemy's ``create_async_engine`` after it.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        pool: PoolOptions | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = async_database_url(url)
        self.pool = pool or PoolOptions()
        """The connection pool's bounds."""
        self._engine_options = {**self.pool.engine_options(), **(engine_options or {})}
        self._engine: AsyncEngine | None = None
        self._open_lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the engine and the table if missing. Idempotent; called lazily on first use."""
        async with self._open_lock:
            if self._engine is not None:
                return
            engine = create_async_engine(self.url, **self._engine_options)
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            try:
                await self._retry(lambda: _create_schema(engine))
            except BaseException:
                await engine.dispose()
                raise
            self._engine = engine

    async def _retry(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``operation``, trying again (tenacity, bounded) while SQLite is busy or the
        connection is lost or refused; a pool limit is named in a RuntimeError.

        Only for operations that are safe to repeat: a read, or a write whose transaction
        cannot have committed when the error came (SQLite busy), or that is idempotent.
        """
        try:
            async for attempt in retrying(logger, f"idempotency store {self.url.database}"):
                with attempt:
                    return await operation()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            problem = pool_problem(exc, self.pool)
            if problem is None:
                raise
            raise RuntimeError(f"idempotency store: {problem}") from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
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

    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        engine = await self._ready()
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
                    continue  # released between our insert and select: try again
                if existing.state is not RecordState.IN_PROGRESS or (
                    existing.claimed_at_ms >= stale_before_ms
                ):
                    return Claim(won=False, record=existing)
                # Compare-and-set on the stale claim: of several takers, one matches.
                taken = await conn.execute(
                    sa.update(t)
                    .where(
                        t.c.key == key,
                        t.c.state == RecordState.IN_PROGRESS.value,
                        t.c.owner == existing.owner,
                        t.c.claimed_at_ms == existing.claimed_at_ms,
                    )
                    .values(values)
                    .returning(t.c.key)
                )
                if taken.first() is not None:
                    return Claim(won=True, record=mine, replaced=existing)
                current = await _select(conn, key)
                if current is not None:
                    return Claim(won=False, record=current)
        raise RuntimeError(f"could not claim idempotency key {key!r}: it keeps changing")

    async def fence(self, key: str, *, owner: str, now_ms: int) -> Claim:
        engine = await self._ready()
        mine, values = _new_record(key, RecordState.FENCED, owner, now_ms)
        for _ in range(_TAKE_RETRIES):
            async with engine.begin() as conn:
                inserted = await conn.execute(_insert_if_absent(engine, values))
                if inserted.first() is not None:
                    return Claim(won=True, record=mine)
                existing = await _select(conn, key)
                if existing is not None:
                    return Claim(won=False, record=existing)
        raise RuntimeError(f"could not fence idempotency key {key!r}: it keeps changing")

    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        engine = await self._ready()
        t = idempotency_table
        async with engine.begin() as conn:
            result = await conn.execute(
                sa.update(t)
                .where(*_held_by(key, owner))
                .values(
                    state=RecordState.DONE.value,
                    reply=json.dumps(reply.to_json(), separators=(",", ":")),
                    updated_ms=now_ms,
                )
                .returning(t.c.key)
            )
            return result.first() is not None

    async def release(self, key: str, *, owner: str) -> bool:
        engine = await self._ready()
        t = idempotency_table
        async with engine.begin() as conn:
            result = await conn.execute(
                sa.delete(t).where(*_held_by(key, owner)).returning(t.c.key)
            )
            return result.first() is not None

    async def abandon(self, *, owner_prefix: str) -> int:
        engine = await self._ready()
        t = idempotency_table
        escaped = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        async with engine.begin() as conn:
            result = await conn.execute(
                sa.delete(t)
                .where(
                    t.c.state == RecordState.IN_PROGRESS.value,
                    t.c.owner.like(f"{escaped}%", escape="\\"),
                )
                .returning(t.c.key)
            )
            return len(result.all())


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


async def _select(conn: AsyncConnection, key: str) -> IdempotencyRecord | None:
    t = idempotency_table
    row = (await conn.execute(sa.select(t).where(t.c.key == key))).first()
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
    )


async def _create_schema(engine: AsyncEngine) -> None:
    # Two processes creating the table at once (PostgreSQL: a unique violation in the
    # catalog; SQLite: "table already exists"): the loser tries again and finds it there.
    # CREATE TABLE IF NOT EXISTS is one transaction, so trying again is always safe.
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(
            (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError)
        ),
        stop=stop_after_attempt(3),
        wait=wait_random(0.05, 0.2),
        reraise=True,
    ):
        with attempt:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()
