"""Alembic environment: migrates the connection SqlIdempotencyStore passes in its config."""

from __future__ import annotations

from saga.participant.sql import metadata
from saga.sqlmigrate import run_env

run_env(metadata, "SqlIdempotencyStore.open() (saga.participant.migrate.upgrade)")
