"""The IdempotencyStore contract (``saga.testing``), run against memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from saga.errors import IdempotencyStoreError
from saga.participant import (
    IdempotencyStore,
    InMemoryIdempotencyStore,
    RecordState,
    SqlIdempotencyStore,
)
from saga.participant.sql import async_database_url
from saga.testing import IdempotencyStoreContract
from saga.testing.store_contract import DONE, NEVER_STALE, T0


class TestInMemoryIdempotencyStore(IdempotencyStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[IdempotencyStore]:
        async with InMemoryIdempotencyStore() as store:
            yield store


class SqlRaces:
    """Two stores (two processes, in effect) on one database."""

    async def test_two_stores_racing_for_keys_have_one_winner_each(self, url: str) -> None:
        async with SqlIdempotencyStore(url) as one, SqlIdempotencyStore(url) as two:
            keys = [f"k{n}" for n in range(25)]
            results = await asyncio.gather(
                *(
                    store.claim(key, owner=name, now_ms=T0, stale_before_ms=NEVER_STALE)
                    for key in keys
                    for store, name in ((one, "one"), (two, "two"))
                )
            )
            for n, key in enumerate(keys):
                pair = results[2 * n : 2 * n + 2]
                assert sum(c.won for c in pair) == 1, key
                record = await one.get(key)
                assert record is not None
                assert record.owner == next(c.record.owner for c in pair if c.won)

    async def test_two_stores_racing_for_a_stale_claim_have_one_winner(self, url: str) -> None:
        async with SqlIdempotencyStore(url) as one, SqlIdempotencyStore(url) as two:
            for n in range(10):
                await one.claim(f"k{n}", owner="dead", now_ms=T0, stale_before_ms=NEVER_STALE)
            for n in range(10):
                pair = await asyncio.gather(
                    one.claim(f"k{n}", owner="one", now_ms=T0 + 9, stale_before_ms=T0 + 1),
                    two.claim(f"k{n}", owner="two", now_ms=T0 + 9, stale_before_ms=T0 + 1),
                )
                assert sum(c.won for c in pair) == 1

    async def test_records_survive_reopening(self, url: str) -> None:
        async with SqlIdempotencyStore(url) as store:
            await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
            await store.complete("k", owner="a", reply=DONE, now_ms=T0)
        async with SqlIdempotencyStore(url) as store:
            record = await store.get("k")
            assert record is not None
            assert record.reply == DONE

    async def test_stores_on_one_database_share_an_identity(
        self, url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        async with SqlIdempotencyStore(url) as one, SqlIdempotencyStore(url) as two:
            assert one.identity is not None
            assert one.identity == two.identity
        other = tmp_path_factory.mktemp("other") / "other.db"
        async with SqlIdempotencyStore(f"sqlite:///{other}") as elsewhere:
            assert elsewhere.identity not in (None, one.identity)

    async def test_a_transaction_commits_the_effect_and_the_record_together(self, url: str) -> None:
        async with SqlIdempotencyStore(url) as store:
            engine = create_async_engine(async_database_url(url))
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("CREATE TABLE effects (k VARCHAR(20))"))
                for key, keep in (("kept", True), ("dropped", False)):
                    await store.claim(key, owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
                    async with store.transaction(key, owner="a") as tx:
                        await tx.connection.execute(
                            sa.text("INSERT INTO effects VALUES (:k)"), {"k": key}
                        )
                        assert await tx.complete(DONE, now_ms=T0)
                        if not keep:
                            tx.discard()
                await store.claim("raised", owner="a", now_ms=T0, stale_before_ms=0)

                async def effect_then_raise() -> None:
                    async with store.transaction("raised", owner="a") as tx:
                        await tx.connection.execute(
                            sa.text("INSERT INTO effects VALUES ('raised')")
                        )
                        await tx.complete(DONE, now_ms=T0)
                        raise RuntimeError("raised after the effect")

                with pytest.raises(RuntimeError, match="raised"):
                    await effect_then_raise()
                async with engine.connect() as conn:
                    rows = (await conn.execute(sa.text("SELECT k FROM effects"))).scalars().all()
                assert rows == ["kept"]
                kept, dropped = await store.get("kept"), await store.get("dropped")
                assert kept is not None
                assert kept.state is RecordState.DONE
                assert dropped is not None
                assert dropped.state is RecordState.IN_PROGRESS, "the record rolled back too"
                async with store.transaction("nobody", owner="a") as tx:
                    assert not await tx.complete(DONE, now_ms=T0), "no claim, no record"
            finally:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("DROP TABLE effects"))
                await engine.dispose()

    async def test_opens_lazily_and_closes_idempotently(self, url: str) -> None:
        store = SqlIdempotencyStore(url)
        assert await store.get("k") is None
        await store.close()
        await store.close()


class TestSqliteIdempotencyStore(IdempotencyStoreContract, SqlRaces):
    @pytest.fixture
    def url(self, sqlite_url: str) -> str:
        return sqlite_url

    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[IdempotencyStore]:
        async with SqlIdempotencyStore(url) as store:
            yield store


@pytest.mark.postgres
class TestPostgresIdempotencyStore(IdempotencyStoreContract, SqlRaces):
    @pytest.fixture
    def url(self, postgres_url: str) -> str:
        return postgres_url

    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[IdempotencyStore]:
        async with SqlIdempotencyStore(url) as store:
            yield store


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///tmp/x.db", "sqlite+aiosqlite:///tmp/x.db"),
        ("sqlite+aiosqlite:///tmp/x.db", "sqlite+aiosqlite:///tmp/x.db"),
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_urls_get_async_drivers(given: str, expected: str) -> None:
    assert async_database_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:", "not a url", "://nothing"]
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(IdempotencyStoreError, match="SqlIdempotencyStore"):
        SqlIdempotencyStore(url)
