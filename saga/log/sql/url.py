"""Database URLs: accept what users type, hand SQLAlchemy the async driver for it."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from saga.errors import LogError
from saga.redact import redact_url as redact

__all__ = ["normalize_url", "redact"]

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}

_SUPPORTED = "sqlite:///path/to/file.db or postgresql://user:password@host:port/database"


def normalize_url(url: str) -> str:
    """The SQLAlchemy async URL for a user's database URL, or LogError if unsupported.

    ``sqlite:///path`` becomes ``sqlite+aiosqlite:///path``; ``postgresql://``,
    ``postgres://`` and ``postgresql+asyncpg://`` become ``postgresql+asyncpg://``.
    In-memory SQLite is refused: each pooled connection would see its own empty database
    (use InMemorySagaLog instead).
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise LogError(f"not a database URL: {redact(url)!r}; expected {_SUPPORTED}") from exc
    driver = _DRIVERS.get(parsed.drivername.lower())
    if driver is None:
        raise LogError(
            f"unsupported database URL scheme {parsed.drivername!r}; expected {_SUPPORTED}"
        )
    if driver.startswith("sqlite") and _is_memory(parsed):
        raise LogError(
            "in-memory SQLite is not supported by SqlSagaLog (every connection would see "
            "a different database); give a file path, sqlite:///saga.db, or use InMemorySagaLog"
        )
    if driver.startswith("postgresql") and not parsed.database:
        raise LogError(f"the PostgreSQL URL names no database; expected {_SUPPORTED}")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _is_memory(parsed: URL) -> bool:
    database = parsed.database or ""
    return database == "" or ":memory:" in database or parsed.query.get("mode") == "memory"
