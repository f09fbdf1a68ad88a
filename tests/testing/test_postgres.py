"""saga.testing.postgres: temporary databases on a real PostgreSQL server, made and dropped."""

from __future__ import annotations

import uuid

import asyncpg  # type: ignore[import-untyped]
import pytest

from saga.testing.postgres import (
    admin_url,
    create_databases,
    database_url,
    drop_databases,
    temporary_databases,
)


async def _exists(server: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_url(server))
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


def test_urls_keep_the_server_and_swap_the_database() -> None:
    server = "postgresql+asyncpg://u:p@h:5433/postgres?ssl=require"
    assert admin_url(server) == "postgresql://u:p@h:5433/postgres?ssl=require"
    assert admin_url("postgres://u@h/db") == "postgresql://u@h/db"
    assert database_url(server, "t1") == "postgresql+asyncpg://u:p@h:5433/t1?ssl=require"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        admin_url("sqlite:///x.db")


@pytest.mark.postgres
async def test_databases_live_for_the_block_and_are_usable(postgres_url: str) -> None:
    names = [f"tmp_{uuid.uuid4().hex[:10]}_{i}" for i in range(2)]
    async with temporary_databases(postgres_url, names) as urls:
        assert set(urls) == set(names)
        for name in names:
            assert await _exists(postgres_url, name)
            conn = await asyncpg.connect(admin_url(urls[name]))
            try:
                assert await conn.fetchval("SELECT current_database()") == name
            finally:
                await conn.close()  # left open, the drop below would close it (FORCE)
    for name in names:
        assert not await _exists(postgres_url, name)


@pytest.mark.postgres
async def test_creating_is_all_or_none(postgres_url: str) -> None:
    taken = postgres_url.rpartition("/")[2]  # the fixture's own database exists already
    first = f"tmp_{uuid.uuid4().hex[:10]}"
    with pytest.raises(asyncpg.DuplicateDatabaseError):
        await create_databases(postgres_url, [first, taken])
    assert not await _exists(postgres_url, first)
    assert await _exists(postgres_url, taken)


@pytest.mark.postgres
async def test_dropping_closes_open_connections_and_ignores_missing(postgres_url: str) -> None:
    name = f"tmp_{uuid.uuid4().hex[:10]}"
    await create_databases(postgres_url, [name])
    held = await asyncpg.connect(admin_url(database_url(postgres_url, name)))
    try:
        await drop_databases(postgres_url, [name, f"{name}_never_made"])
        assert not await _exists(postgres_url, name)
    finally:
        await held.close()


@pytest.mark.parametrize("name", ['x"; DROP DATABASE postgres; --', "1abc", "a" * 64, ""])
async def test_names_outside_the_plain_grammar_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="use letters, digits and _ only"):
        await create_databases("postgresql://u@127.0.0.1:1/postgres", [name])
