"""Connection pools: small by default, idle connections given back, limits named in errors."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

import saga.sqlpool
from saga import PoolOptions, SqlIdempotencyStore
from saga.errors import LogError
from saga.log.sql import SqlSagaLog
from saga.testing.log_contract import new_saga


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"size": 0}, "size"),
        ({"size": True}, "size"),
        ({"overflow": -1}, "overflow"),
        ({"overflow": 1.5}, "overflow"),
        ({"timeout": timedelta(0)}, "timeout"),
        ({"recycle": 30}, "recycle"),
    ],
)
def test_bad_pool_options_are_refused(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        PoolOptions(**options)


def test_default_pool_keeps_one_idle_connection_and_at_most_five() -> None:
    pool = PoolOptions()
    assert (pool.size, pool.limit) == (1, 5)
    assert pool.engine_options()["pool_size"] == 1
    assert pool.engine_options()["max_overflow"] == 4


async def test_an_exhausted_pool_names_its_limit(sqlite_url: str) -> None:
    log = SqlSagaLog(
        sqlite_url, pool=PoolOptions(size=1, overflow=0, timeout=timedelta(seconds=0.2))
    )
    await log.open()
    try:
        async with log.engine.connect():  # the only connection is busy
            with pytest.raises(LogError, match=r"all 1 of this pool's .*size=1 \+ overflow=0"):
                await log.get("a")
        assert await log.get("a") is None  # and free again
    finally:
        await log.close()


class LimitedRole:
    """A PostgreSQL role allowed ``limit`` connections, owning a fresh test database."""

    def __init__(self, admin_url: str, limit: int) -> None:
        self.admin_url = admin_url.replace("postgresql+asyncpg://", "postgresql://")
        self.database = self.admin_url.rsplit("/", 1)[1]
        self.name = f"saga_pool_{uuid.uuid4().hex[:10]}"
        self.limit = limit
        server, _, _ = self.admin_url.partition("@")
        self.url = self.admin_url.replace(server, f"postgresql://{self.name}", 1)

    async def admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def connections(self) -> int:
        conn = await asyncpg.connect(self.admin_url)
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", self.name
            )
        finally:
            await conn.close()
        return count


@pytest.fixture
async def role(postgres_url: str) -> AsyncIterator[LimitedRole]:
    role = LimitedRole(postgres_url, limit=5)
    await role.admin(
        f'CREATE ROLE "{role.name}" LOGIN CONNECTION LIMIT {role.limit}',
        f'ALTER DATABASE "{role.database}" OWNER TO "{role.name}"',
    )
    yield role
    await role.admin(
        f'ALTER DATABASE "{role.database}" OWNER TO postgres',
        f'REASSIGN OWNED BY "{role.name}" TO postgres',
        f'DROP OWNED BY "{role.name}"',
        f'DROP ROLE "{role.name}"',
    )


async def burst(engine: Any, connections: int) -> None:
    """Hold ``connections`` of the engine's connections at once, then give them back."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(connections):
            conn = await stack.enter_async_context(engine.connect())
            await conn.exec_driver_sql("SELECT 1")


@pytest.mark.postgres
async def test_idle_connections_are_given_back_so_another_client_can_connect(
    role: LimitedRole,
) -> None:
    # The trial: a role limited to 5 connections, the saga log and one service's
    # idempotency store on default pools. After a burst that takes all 5, both keep one.
    log = SqlSagaLog(role.url)
    store = SqlIdempotencyStore(role.url)
    await log.open()
    await store.open()
    others: list[asyncpg.Connection] = []
    try:
        await burst(log.engine, 3)
        assert store._engine is not None  # the store has no public engine; a burst needs one
        await burst(store._engine, 2)
        await log.create(new_saga("after-the-burst"))
        assert await store.get("k") is None
        assert await role.connections() == 2  # one idle connection each
        # Another service (on the same role) gets the rest.
        for _ in range(role.limit - 2):
            others.append(await asyncpg.connect(role.url))
    finally:
        for other in others:
            await other.close()
        await store.close()
        await log.close()


@pytest.mark.postgres
async def test_a_server_that_refuses_connections_is_named_in_the_error(
    role: LimitedRole, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(saga.sqlpool, "RETRY_ATTEMPTS", 2)  # refused: fail fast in this test
    log = SqlSagaLog(role.url)
    await log.open()
    hogs = [await asyncpg.connect(role.url) for _ in range(role.limit - 1)]
    try:
        async with log.engine.connect():  # the log's one connection; it needs another
            with pytest.raises(LogError, match="CONNECTION LIMIT") as caught:
                await log.get("a")
        assert "too many connections" in str(caught.value)
        assert "overflow=4" in str(caught.value)
    finally:
        for hog in hogs:
            await hog.close()
        await log.close()
