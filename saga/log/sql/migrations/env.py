"""Alembic environment: migrates the connection SqlSagaLog passes in ``config.attributes``."""

from __future__ import annotations

from saga.log.sql.schema import metadata
from saga.sqlmigrate import run_env

run_env(metadata, "SqlSagaLog.open() (saga.log.sql.migrate.upgrade)")
