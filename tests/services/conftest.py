"""Databases for the example services: four SQLite files, or four fresh PostgreSQL databases.

The PostgreSQL variant builds on the ``postgres_url`` fixture (which skips, or fails under
SAGA_REQUIRE_POSTGRES=1, when there is no server): that database holds the saga log, and one
more database per service is created beside it on the same server and dropped after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICES = ("orders", "payments", "inventory", "shipping")


@dataclass(frozen=True)
class Databases:
    """The saga log's URL and each service's own database URL."""

    log: str
    services: dict[str, str]


@pytest.fixture
def sqlite_databases(tmp_path: Path) -> Databases:
    return Databases(
        log=f"sqlite:///{tmp_path / 'saga.db'}",
        services={name: f"sqlite:///{tmp_path / name}.db" for name in SERVICES},
    )


@pytest.fixture
async def postgres_databases(postgres_url: str) -> AsyncIterator[Databases]:
    import asyncpg

    base, _, log_db = postgres_url.rpartition("/")
    admin_url = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    names = {name: f"{log_db}_{name}" for name in SERVICES}
    admin = await asyncpg.connect(admin_url)
    try:
        for db in names.values():
            await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    try:
        yield Databases(
            log=postgres_url, services={name: f"{base}/{db}" for name, db in names.items()}
        )
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            for db in names.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest) -> Databases:
    value: Databases = request.getfixturevalue(f"{request.param}_databases")
    return value
