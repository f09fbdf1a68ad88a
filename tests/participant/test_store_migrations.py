"""SqlIdempotencyStore's schema comes from Alembic migrations, with a version table of its own.

A database made before migrations (``create_all``, no version row) is adopted with every record
kept; replicas opening one database at once agree; a newer schema and driver failures are
IdempotencyStoreError with the cause chained.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saga.errors import IdempotencyStoreError
from saga.log.sql import SqlSagaLog
from saga.participant import RecordState, SqlIdempotencyStore
from saga.participant.migrate import MIGRATIONS, VERSION_TABLE, head_revision
from saga.participant.sql import async_database_url, idempotency_table, identity_table
from saga.testing.store_contract import DONE, NEVER_STALE, T0


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    made = create_async_engine(async_database_url(url))
    yield made
    await made.dispose()


async def versions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
        return [row[0] for row in rows]


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


async def test_a_new_database_is_migrated_to_head_in_its_own_version_table(
    url: str, engine: AsyncEngine
) -> None:
    async with SqlIdempotencyStore(url) as store:
        assert (await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)).won
    assert await versions(engine) == [head_revision()]
    assert "alembic_version" not in await tables(engine), "an application's own history is apart"


async def create_all_as_before(engine: AsyncEngine, *, with_identity: bool) -> None:
    """The schema the store made before it had migrations, holding one answered key."""
    chosen = [idempotency_table, identity_table] if with_identity else [idempotency_table]
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: idempotency_table.metadata.create_all(sync, chosen))
        await conn.execute(
            idempotency_table.insert().values(
                key="payments:s1/credit/forward",
                state=RecordState.DONE.value,
                owner="payments//old",
                reply='{"outcome":"succeeded","result":{"reservation":"r-1"}}',
                claimed_at_ms=T0,
                updated_ms=T0,
            )
        )
        if with_identity:
            await conn.execute(identity_table.insert().values(id=1, identity="made-before"))


@pytest.mark.parametrize("with_identity", [True, False], ids=["with-identity", "records-only"])
async def test_a_database_made_by_create_all_is_adopted_and_keeps_its_records(
    url: str, engine: AsyncEngine, with_identity: bool
) -> None:
    await create_all_as_before(engine, with_identity=with_identity)
    async with SqlIdempotencyStore(url) as store:
        record = await store.get("payments:s1/credit/forward")
        assert record is not None
        assert record.state is RecordState.DONE
        assert record.reply is not None
        assert record.reply.result == {"reservation": "r-1"}
        if with_identity:
            assert store.identity == "made-before", "replicas must keep recognising each other"
        else:
            assert store.identity is not None
        assert (await store.claim("k2", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)).won
        assert await store.complete("k2", owner="a", reply=DONE, now_ms=T0)
    assert await versions(engine) == [head_revision()]


async def test_replicas_opening_one_new_database_at_once_agree(
    url: str, engine: AsyncEngine
) -> None:
    stores = [SqlIdempotencyStore(url) for _ in range(6)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert len({store.identity for store in stores}) == 1
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    assert await versions(engine) == [head_revision()]


async def test_the_store_and_the_saga_log_share_a_database_with_separate_histories(
    url: str, engine: AsyncEngine
) -> None:
    log = SqlSagaLog(url)
    await log.open()
    try:
        async with SqlIdempotencyStore(url) as store:
            assert await store.get("k") is None
    finally:
        await log.close()
    assert await versions(engine) == [head_revision()]
    assert {"sagas", "saga_events", "saga_idempotency", VERSION_TABLE} <= await tables(engine)


async def test_a_newer_schema_is_refused_with_a_clear_error(url: str, engine: AsyncEngine) -> None:
    async with SqlIdempotencyStore(url):
        pass
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(IdempotencyStoreError, match=r"'9999'.*newer saga-coordinator") as caught:
        await SqlIdempotencyStore(url).open()
    assert caught.value.__cause__ is not None


async def test_driver_errors_are_idempotency_store_errors_with_the_cause(tmp_path: Path) -> None:
    # A file that is not a SQLite database: the driver fails on it, for good. (Not a path
    # that cannot be opened: aiosqlite then leaves a thread that outlives the event loop.)
    garbage = tmp_path / "not-a-database.db"
    garbage.write_bytes(b"this is not a SQLite database, only some text. " * 100)
    store = SqlIdempotencyStore(f"sqlite:///{garbage}")
    with pytest.raises(IdempotencyStoreError, match="idempotency store") as caught:
        await store.get("k")
    assert isinstance(caught.value.__cause__, sa.exc.SQLAlchemyError)
    await store.close()


def test_the_migrations_ship_with_the_package() -> None:
    root = Path(__file__).resolve().parents[2]
    with (root / "pyproject.toml").open("rb") as file:
        shipped = tomllib.load(file)["tool"]["setuptools"]["package-data"]["saga"]
    package = root / "saga"
    needed = [
        path.relative_to(package).as_posix()
        for path in (package / "participant" / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert needed, "the store's migrations are where migrate.MIGRATIONS says"
    assert (package / "participant" / "migrations") == MIGRATIONS
    missing = [path for path in needed if not any(fnmatch(path, glob) for glob in shipped)]
    assert missing == []
