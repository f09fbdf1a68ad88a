"""Schema migrations: run Alembic programmatically, from inside the installed package.

Schemas are upgraded by writers only: a coordinator (``saga coordinator``, ``saga dev``) at
start, or ``saga migrate`` ahead of it. Readers (``saga log``) call ``check_schema``, which
creates and changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from saga.errors import LogError
from saga.sqlconnect import WRITE
from saga.sqlmigrate import MigrationHistory

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
"""Alembic's script directory, shipped as package data."""

VERSION_TABLE = "saga_alembic_version"
"""Our own version table, so a database shared with an application that uses Alembic for
its own tables keeps the two histories apart."""

HISTORY = MigrationHistory(
    scripts=MIGRATIONS,
    version_table=VERSION_TABLE,
    what="saga log",
    error=LogError,
    lock_name="saga-coordinator:migrations",
)
alembic_config = HISTORY.config
head_revision = HISTORY.head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None if the saga log was never created there)."""
    return HISTORY.current(connection)


async def upgrade(engine: AsyncEngine) -> None:
    """Create or upgrade the schema to head, in one transaction.

    Safe to call from several processes at once: on PostgreSQL a transaction-scoped advisory
    lock serialises them; on SQLite BEGIN IMMEDIATE takes the database's write lock. Whoever
    comes second finds the schema at head and does nothing.
    """
    async with engine.connect() as conn:
        await conn.execution_options(**WRITE)
        async with conn.begin():
            await HISTORY.lock(conn)
            await conn.run_sync(HISTORY.upgrade)


async def check_schema(engine: AsyncEngine, where: str) -> None:
    """LogError unless the database holds a saga log at this release's schema; writes nothing.

    A missing SQLite file is reported, not created; an older schema is reported, not upgraded.
    ``where`` names the database in messages (a redacted URL).
    """
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database:
        missing = _missing_file(database)
        if missing is not None:
            raise LogError(f"no saga log at {missing}: no such file")
    async with engine.connect() as conn:
        found = await conn.run_sync(current_revision)
    head = head_revision()
    if found == head:
        return
    run = "run `saga migrate` with the same --db"
    if found is None:
        raise LogError(f"no saga log at {where}: the database holds no saga log tables ({run})")
    if found in HISTORY.known():
        raise LogError(
            f"the saga log at {where} has schema revision {found} and this release reads {head}:"
            f" {run} to upgrade it"
        )
    raise LogError(
        f"the saga log at {where} has schema revision {found!r}, unknown to this release (was"
        f" it created by a newer saga-coordinator?)"
    )


def _missing_file(database: str) -> Path | None:
    """The absolute path of a SQLite file that does not exist (None if it does)."""
    path = Path(database).expanduser()
    return None if path.is_file() else path.resolve()
