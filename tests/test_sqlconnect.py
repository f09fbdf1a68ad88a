"""saga.sqlconnect: one URL normaliser and one SQLite set-up, each adapter with its own rules."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from saga.errors import LogError
from saga.log.sql import SqlSagaLog
from saga.log.sql.url import RULES as LOG_RULES
from saga.participant.sql import SqlIdempotencyStore, async_database_url
from saga.sqlconnect import WRITE, SqliteSetup, UrlRules, database_url

STORE_RULES = UrlRules(
    user="SqlIdempotencyStore",
    in_memory_instead="InMemoryIdempotencyStore",
    any_driver=True,
    require_database=False,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("SQLite+AIOSQLite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        (
            "postgresql+asyncpg://u@h:5433/db?ssl=require",
            "postgresql+asyncpg://u@h:5433/db?ssl=require",
        ),
    ],
)
def test_both_adapters_read_a_url_the_same_way(given: str, expected: str) -> None:
    for rules in (LOG_RULES, STORE_RULES):
        assert database_url(given, rules).render_as_string(hide_password=False) == expected
    assert async_database_url(given).render_as_string(hide_password=False) == expected


def test_rules_differ_only_where_the_adapters_did() -> None:
    other_driver = "postgresql+psycopg2://u@h/db"
    assert str(database_url(other_driver, STORE_RULES)) == "postgresql+asyncpg://u@h/db"
    with pytest.raises(ValueError, match="unsupported database URL scheme 'postgresql\\+psycopg2'"):
        database_url(other_driver, LOG_RULES)
    assert str(database_url("postgresql://u@h", STORE_RULES)) == "postgresql+asyncpg://u@h"
    with pytest.raises(ValueError, match="names no database; SqlSagaLog expects"):
        database_url("postgresql://u@h", LOG_RULES)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///f.db?mode=memory"])
def test_in_memory_sqlite_is_refused_naming_the_alternative(url: str) -> None:
    with pytest.raises(ValueError, match="in-memory SQLite is not supported by SqlIdempotency"):
        database_url(url, STORE_RULES)
    with pytest.raises(LogError, match="use InMemorySagaLog") as caught:
        SqlSagaLog(url)
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_url_that_does_not_parse_says_so_with_the_forms_expected() -> None:
    with pytest.raises(
        ValueError, match=r"not a database URL: 'saga\.db'; SqlIdempotencyStore"
    ) as caught:
        database_url("saga.db", STORE_RULES)
    assert caught.value.__cause__ is not None


def test_settings_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteSetup(synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SqliteSetup(busy_timeout=timedelta(0))
    with pytest.raises(ValueError, match="immediate"):
        SqliteSetup(immediate="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UrlRules"):
        UrlRules(user="", in_memory_instead="x")


def _write_lock_is_taken(path: Path) -> bool:
    """Whether another connection holds the file's write lock (a RESERVED lock or more)."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    else:
        other.execute("ROLLBACK")
        return False
    finally:
        other.close()


async def test_the_store_syncs_normal_and_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with (
        SqlIdempotencyStore(f"sqlite:///{path}") as store,
        store.transaction("k", owner="o") as tx,
    ):
        pragma = tx.connection.exec_driver_sql
        assert (await pragma("PRAGMA journal_mode")).scalar() == "wal"
        assert (await pragma("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert (await pragma("PRAGMA busy_timeout")).scalar() == 10_000
        assert (await pragma("PRAGMA foreign_keys")).scalar() == 0
        assert _write_lock_is_taken(path)  # BEGIN IMMEDIATE, before anything was written
    assert not _write_lock_is_taken(path)


async def test_the_log_syncs_full_and_locks_only_for_a_write(tmp_path: Path) -> None:
    path = tmp_path / "saga.db"
    log = SqlSagaLog(f"sqlite:///{path}")
    await log.open()
    try:
        async with log.engine.connect() as reader, reader.begin():
            assert (await reader.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
            assert not _write_lock_is_taken(path)  # a reader begins deferred
        async with log.engine.connect() as writer:
            await writer.execution_options(**WRITE)
            async with writer.begin():
                assert _write_lock_is_taken(path)
    finally:
        await log.close()
