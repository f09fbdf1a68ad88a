"""Temporary PostgreSQL databases: made on a server for a test or a soak run, dropped after.

The test fixtures and ``saga soak`` share these, so a fresh database is made and removed in
one way only::

    async with temporary_databases("postgresql://postgres@127.0.0.1/postgres", ["t1"]) as urls:
        log = SqlSagaLog(urls["t1"])
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["admin_url", "create_databases", "database_url", "drop_databases", "temporary_databases"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""Database names made here: no quoting surprises, within PostgreSQL's 63 bytes."""


def _checked(names: Iterable[str]) -> list[str]:
    found = list(names)
    for name in found:
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: use letters, digits and _ only (63 at most)")
    return found


def admin_url(url: str) -> str:
    """``url`` as asyncpg takes it (``postgresql://``), whatever driver form it was given in."""
    parts = urlsplit(url)
    if not parts.scheme.lower().startswith("postgres"):
        raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://...")
    return urlunsplit(("postgresql", *parts[1:]))


def database_url(server_url: str, name: str) -> str:
    """The SQLAlchemy URL (``postgresql+asyncpg``) of database ``name`` on ``server_url``'s
    server, with the same user, password and query."""
    parts = urlsplit(admin_url(server_url))
    return urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{name}", parts.query, ""))


async def create_databases(server_url: str, names: Iterable[str]) -> None:
    """Create each database on ``server_url``'s server; all or none (those made are dropped
    again if one fails). The driver's errors (OSError, asyncpg.PostgresError) propagate."""
    import asyncpg  # type: ignore[import-untyped]

    wanted = _checked(names)
    made: list[str] = []
    admin = await asyncpg.connect(admin_url(server_url))
    try:
        for name in wanted:
            await admin.execute(f'CREATE DATABASE "{name}"')
            made.append(name)
    except BaseException:
        await _drop(admin, made)
        raise
    finally:
        await admin.close()


async def drop_databases(server_url: str, names: Iterable[str]) -> None:
    """Drop each database if it exists, closing the connections still open to it."""
    import asyncpg

    doomed = _checked(names)
    if not doomed:
        return
    admin = await asyncpg.connect(admin_url(server_url))
    try:
        await _drop(admin, doomed)
    finally:
        await admin.close()


async def _drop(admin: Any, names: list[str]) -> None:
    for name in names:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def temporary_databases(
    server_url: str, names: Iterable[str]
) -> AsyncIterator[dict[str, str]]:
    """Fresh databases on ``server_url``'s server for the ``with`` block, dropped after it;
    yields each name's SQLAlchemy URL."""
    made = _checked(names)
    await create_databases(server_url, made)
    try:
        yield {name: database_url(server_url, name) for name in made}
    finally:
        await drop_databases(server_url, made)
