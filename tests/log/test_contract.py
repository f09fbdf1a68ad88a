"""The SagaLog contract, run against every adapter: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from saga.log.base import SagaLog
from saga.log.memory import InMemorySagaLog
from saga.log.sql import SqlSagaLog
from saga.testing.log_contract import SagaLogContract


class TestInMemorySagaLog(SagaLogContract):
    @pytest.fixture
    async def log(self) -> AsyncIterator[SagaLog]:
        log = InMemorySagaLog()
        await log.open()
        yield log
        await log.close()


class TestSqliteSagaLog(SagaLogContract):
    @pytest.fixture
    async def log(self, sqlite_url: str) -> AsyncIterator[SagaLog]:
        log = SqlSagaLog(sqlite_url)
        await log.open()
        yield log
        await log.close()


@pytest.mark.postgres
class TestPostgresSagaLog(SagaLogContract):
    @pytest.fixture
    async def log(self, postgres_url: str) -> AsyncIterator[SagaLog]:
        log = SqlSagaLog(postgres_url)
        await log.open()
        yield log
        await log.close()
