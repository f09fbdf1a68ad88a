"""SqlSagaLog beyond the contract: SQLite settings, migrations, URLs, concurrent opens."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from saga.errors import LogError
from saga.log.sql import SqlSagaLog, normalize_url
from saga.log.sql.migrate import VERSION_TABLE, current_revision, head_revision
from saga.log.sql.schema import metadata
from saga.testing.log_contract import T0, advance, new_saga, step_sent


async def _revision(log: SqlSagaLog) -> str | None:
    async with log.engine.connect() as conn:
        return await conn.run_sync(current_revision)


# -- SQLite settings ------------------------------------------------------------------


async def test_sqlite_connections_use_wal_and_full_sync(sqlite_url: str) -> None:
    log = SqlSagaLog(sqlite_url)
    await log.open()
    try:
        # Hold two connections at once so the pool must set up more than one.
        async with log.engine.connect() as first, log.engine.connect() as second:
            for conn in (first, second):
                pragma = conn.exec_driver_sql
                assert (await pragma("PRAGMA journal_mode")).scalar() == "wal"
                assert (await pragma("PRAGMA synchronous")).scalar() == 2  # FULL
                assert (await pragma("PRAGMA foreign_keys")).scalar() == 1
                assert (await pragma("PRAGMA busy_timeout")).scalar() == 10_000
    finally:
        await log.close()
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_open_in_a_missing_directory_raises_log_error(tmp_path: Path) -> None:
    log = SqlSagaLog(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'saga.db'}")
    with pytest.raises(LogError, match="open"):
        await log.open()


async def test_sqlite_accepts_the_plain_scheme(tmp_path: Path) -> None:
    log = SqlSagaLog(f"sqlite:///{tmp_path / 'plain.db'}")
    await log.open()
    try:
        assert log.engine.dialect.driver == "aiosqlite"
        _, created = await log.create(new_saga("s"))
        assert created
    finally:
        await log.close()


# -- migrations -----------------------------------------------------------------------


async def test_schema_is_at_head_and_matches_the_metadata(sql_url: str) -> None:
    log = SqlSagaLog(sql_url)
    await log.open()
    try:
        assert head_revision() == "0006"
        assert await _revision(log) == head_revision()

        def diff(conn: Connection) -> list[Any]:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return list(compare_metadata(context, metadata))

        async with log.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await log.close()


async def test_reopening_keeps_data_and_schema(sql_url: str) -> None:
    first = SqlSagaLog(sql_url)
    await first.open()
    await first.create(new_saga("kept", input={"a": [1, 2]}))
    await first.append([advance("kept", 1, step_sent("pay", T0 + 1), current_step="pay")])
    record, events = await first.get("kept"), await first.events("kept")
    await first.close()

    for _ in range(2):
        again = SqlSagaLog(sql_url)
        await again.open()
        try:
            assert await again.get("kept") == record
            assert await again.events("kept") == events
            assert await _revision(again) == head_revision()
            async with again.engine.connect() as conn:
                versions = await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
                assert versions.all() == [(head_revision(),)]
        finally:
            await again.close()


async def test_a_database_from_a_newer_release_is_refused(sql_url: str) -> None:
    log = SqlSagaLog(sql_url)
    await log.open()
    async with log.engine.begin() as conn:
        await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    await log.close()
    with pytest.raises(LogError, match="9999"):
        await SqlSagaLog(sql_url).open()


async def test_concurrent_opens_all_work(sql_url: str) -> None:
    logs = [SqlSagaLog(sql_url) for _ in range(4)]
    await asyncio.gather(*(log.open() for log in logs))
    try:
        for i, log in enumerate(logs):
            _, created = await log.create(new_saga(f"from-{i}", at_ms=T0 + i))
            assert created
        for log in logs:
            page = await log.find()
            assert [r.saga_id for r in page.sagas] == ["from-3", "from-2", "from-1", "from-0"]
            assert await _revision(log) == head_revision()
    finally:
        await asyncio.gather(*(log.close() for log in logs))


@pytest.mark.postgres
async def test_postgres_uses_asyncpg(postgres_url: str) -> None:
    log = SqlSagaLog(postgres_url.replace("postgresql+asyncpg://", "postgres://"))
    await log.open()
    try:
        assert log.engine.dialect.name == "postgresql"
        assert log.engine.dialect.driver == "asyncpg"
    finally:
        await log.close()


# -- lifecycle and errors -------------------------------------------------------------


async def test_open_is_idempotent_and_engine_needs_open(sqlite_url: str) -> None:
    log = SqlSagaLog(sqlite_url)
    with pytest.raises(LogError, match="not open"):
        _ = log.engine
    with pytest.raises(LogError, match="not open"):
        await log.get("x")
    await log.open()
    engine = log.engine
    await log.open()
    assert log.engine is engine
    await log.close()
    with pytest.raises(LogError, match="not open"):
        _ = log.engine


async def test_unreachable_postgres_raises_log_error_without_the_password() -> None:
    log = SqlSagaLog("postgresql://saga:s3cret@127.0.0.1:1/saga")
    assert "s3cret" not in repr(log)
    with pytest.raises(LogError) as caught:
        await log.open()
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is not None
    with pytest.raises(LogError, match="not open"):
        await log.get("x")


# -- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///saga.db", "sqlite+aiosqlite:///saga.db"),
        ("sqlite:////var/lib/saga/saga.db", "sqlite+aiosqlite:////var/lib/saga/saga.db"),
        ("sqlite+aiosqlite:///saga.db", "sqlite+aiosqlite:///saga.db"),
        ("postgresql://u:p@db:5432/saga", "postgresql+asyncpg://u:p@db:5432/saga"),
        ("postgres://u:p@db/saga", "postgresql+asyncpg://u:p@db/saga"),
        ("postgresql+asyncpg://u@db/saga", "postgresql+asyncpg://u@db/saga"),
        ("postgresql://u:p%40ss@db/saga", "postgresql+asyncpg://u:p%40ss@db/saga"),
        (
            "postgresql://db/saga?application_name=x",
            "postgresql+asyncpg://db/saga?application_name=x",
        ),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://u:p@db/saga", "unsupported"),
        ("postgresql+psycopg2://u@db/saga", "unsupported"),
        ("sqlite+pysqlite:///saga.db", "unsupported"),
        ("http://example.com", "unsupported"),
        ("", "not a database URL"),
        ("saga.db", "not a database URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("postgresql://u@db", "no database"),
    ],
)
def test_bad_urls_raise_log_error(given: str, reason: str) -> None:
    with pytest.raises(LogError, match=reason):
        normalize_url(given)
    with pytest.raises(LogError, match=reason):
        SqlSagaLog(given)
