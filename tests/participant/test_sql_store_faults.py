"""SqlIdempotencyStore: small pools by default, and reads that survive lost connections."""

from __future__ import annotations

import pytest

from saga import PoolOptions, SqlIdempotencyStore
from tests.log.test_sql_faults import kill_other_connections


@pytest.mark.postgres
@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre-ping", "retry-only"])
async def test_reads_survive_killed_connections(postgres_url: str, pre_ping: bool) -> None:
    store = SqlIdempotencyStore(postgres_url, pool=PoolOptions(pre_ping=pre_ping))
    await store.open()
    try:
        assert await store.get("k") is None
        assert await kill_other_connections(postgres_url) >= 1
        assert await store.get("k") is None  # the pooled connection was dead: no error
    finally:
        await store.close()


def test_the_default_pool_is_small() -> None:
    store = SqlIdempotencyStore("sqlite:///store.db")
    assert store.pool == PoolOptions()
    assert store.pool.limit == 5
