"""A fresh saga log of every kind, for tests of what all logs must do alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from saga.log.base import SagaLog
from saga.log.memory import InMemorySagaLog
from saga.log.sql import SqlSagaLog


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_log_url(request: pytest.FixtureRequest) -> str:
    """``memory``, or the URL of a fresh SQLite file or PostgreSQL database."""
    if request.param == "memory":
        return "memory"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def any_log(any_log_url: str) -> AsyncIterator[SagaLog]:
    """An open InMemorySagaLog or SqlSagaLog (SQLite, PostgreSQL), closed after the test."""
    saga_log: SagaLog = InMemorySagaLog() if any_log_url == "memory" else SqlSagaLog(any_log_url)
    await saga_log.open()
    yield saga_log
    await saga_log.close()
