"""``saga log`` only reads: it never creates or migrates a database; ``saga migrate`` does."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from alembic import command
from click.testing import CliRunner, Result
from sqlalchemy import create_engine

from saga.cli import main
from saga.log.sql.migrate import alembic_config, head_revision


def saga(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def revision(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT version_num FROM saga_alembic_version").fetchone()[0])


def test_log_with_the_default_db_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = saga("log", "order-1")
    assert done.exit_code == 1
    assert done.output == f"Error: no saga log at {tmp_path / 'saga.db'}: no such file\n"
    assert list(tmp_path.iterdir()) == []


def test_log_on_a_database_without_a_saga_log_leaves_it_alone(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    done = saga("log", "order-1", "--db", f"sqlite:///{db}")
    assert done.exit_code == 1
    assert "holds no saga log tables (run `saga migrate` with the same --db)" in done.output
    assert done.output.count("\n") == 1
    assert tables(db) == {"notes"}


def test_an_old_schema_is_reported_then_saga_migrate_upgrades_it(tmp_path: Path) -> None:
    db = tmp_path / "saga.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    engine.dispose()
    url = f"sqlite:///{db}"

    done = saga("log", "order-1", "--db", url)
    assert done.exit_code == 1
    assert f"has schema revision 0002 and this release reads {head_revision()}" in done.output
    assert "run `saga migrate` with the same --db to upgrade it" in done.output
    assert revision(db) == "0002"

    done = saga("migrate", "--db", url)
    assert done.exit_code == 0, done.output
    assert done.output == f"saga log at {url}: schema at revision {head_revision()} (newest)\n"
    assert revision(db) == head_revision()

    done = saga("log", "order-1", "--db", url)
    assert done.exit_code == 3  # not found
    assert done.output == f"Error: no saga 'order-1' in {url}\n"


def test_migrate_creates_a_new_saga_log(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    done = saga("migrate", "--db", f"sqlite:///{db}")
    assert done.exit_code == 0, done.output
    assert {"sagas", "saga_events"} <= tables(db)


@pytest.mark.postgres
async def test_log_on_an_empty_postgres_database_creates_no_table(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    done = await asyncio.to_thread(saga, "log", "order-1", "--db", url)
    assert done.exit_code == 1
    assert "holds no saga log tables (run `saga migrate`" in done.output
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    assert count == 0
