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

from saga.testing.postgres import temporary_databases

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
    log_db = postgres_url.rpartition("/")[2]
    names = {name: f"{log_db}_{name}" for name in SERVICES}
    async with temporary_databases(postgres_url, names.values()) as urls:
        yield Databases(log=postgres_url, services={s: urls[db] for s, db in names.items()})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest) -> Databases:
    value: Databases = request.getfixturevalue(f"{request.param}_databases")
    return value
