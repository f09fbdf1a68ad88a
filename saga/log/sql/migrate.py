"""Schema migrations: run Alembic programmatically, from inside the installed package.

Schemas are upgraded by writers only: a coordinator (``saga coordinator``, ``saga dev``) at
start, or ``saga migrate`` ahead of it. Readers (``saga log``) call ``check_schema``, which
creates and changes nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from saga.errors import LogError
from saga.sqlconnect import WRITE

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
"""Alembic's script directory, shipped as package data."""

VERSION_TABLE = "saga_alembic_version"
"""Our own version table, so a database shared with an application that uses Alembic for
its own tables keeps the two histories apart."""

_PG_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"saga-coordinator:migrations").digest()[:8], "big", signed=True
)
"""The PostgreSQL advisory lock that serialises coordinators upgrading at the same time."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the saga log's migrations; no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


def head_revision() -> str:
    """The newest schema revision this release knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its revisions
        raise LogError(f"no saga log migrations found in {MIGRATIONS}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None if the saga log was never created there)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def upgrade(engine: AsyncEngine) -> None:
    """Create or upgrade the schema to head, in one transaction.

    Safe to call from several processes at once: on PostgreSQL a transaction-scoped advisory
    lock serialises them; on SQLite BEGIN IMMEDIATE takes the database's write lock. Whoever
    comes second finds the schema at head and does nothing.
    """
    async with engine.connect() as conn:
        await conn.execution_options(**WRITE)
        async with conn.begin():
            if engine.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                )
            await conn.run_sync(_upgrade)


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
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if found in known:
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


def _upgrade(connection: Connection) -> None:
    try:
        command.upgrade(alembic_config(connection), "head")
    except CommandError as exc:
        found = current_revision(connection)
        raise LogError(
            f"cannot migrate the saga log from schema revision {found!r} to {head_revision()!r}"
            f" (was the database created by a newer saga-coordinator?): {exc}"
        ) from exc
