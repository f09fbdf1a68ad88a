"""Database URLs: accept what users type, hand SQLAlchemy the async driver for it."""

from __future__ import annotations

from saga.errors import LogError
from saga.redact import redact_url as redact
from saga.sqlconnect import UrlRules, database_url

__all__ = ["normalize_url", "redact"]

RULES = UrlRules(user="SqlSagaLog", in_memory_instead="InMemorySagaLog")
"""Only the plain and async driver forms: another driver's URL is a mistake worth naming."""


def normalize_url(url: str) -> str:
    """The SQLAlchemy async URL for a user's database URL, or LogError if unsupported.

    ``sqlite:///path`` becomes ``sqlite+aiosqlite:///path``; ``postgresql://``,
    ``postgres://`` and ``postgresql+asyncpg://`` become ``postgresql+asyncpg://``.
    In-memory SQLite is refused: each pooled connection would see its own empty database
    (use InMemorySagaLog instead), and so is a PostgreSQL URL without a database.
    """
    try:
        parsed = database_url(url, RULES)
    except ValueError as exc:
        raise LogError(str(exc)) from exc
    return parsed.render_as_string(hide_password=False)
