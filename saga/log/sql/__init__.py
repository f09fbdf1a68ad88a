"""The SQL saga log: SQLite or PostgreSQL through SQLAlchemy 2 async Core, Alembic migrations."""

from saga.log.sql.log import SqlSagaLog
from saga.log.sql.url import normalize_url

__all__ = ["SqlSagaLog", "normalize_url"]
