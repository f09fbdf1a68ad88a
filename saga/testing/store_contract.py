"""IdempotencyStoreContract: the behaviour every IdempotencyStore must show, as a pytest suite.

Subclass it in a test module, in a class whose name starts with ``Test``, and provide a
``store`` fixture that yields an open, empty store (and closes it afterwards)::

    class TestMyIdempotencyStore(IdempotencyStoreContract):
        @pytest.fixture
        async def store(self) -> AsyncIterator[IdempotencyStore]:
            async with MyIdempotencyStore(...) as store:
                yield store

The tests are coroutines and need pytest-asyncio (``asyncio_mode = "auto"``, or
``pytestmark = pytest.mark.asyncio`` in the subclass in strict mode). This module does not
import pytest, so ``saga.testing`` stays importable without it. The suite runs against
InMemoryIdempotencyStore, and SqlIdempotencyStore on SQLite and on PostgreSQL, in this
project's own tests.
"""

from __future__ import annotations

import asyncio

from saga.participant.store import IdempotencyStore, RecordState
from saga.protocol import Reply

T0 = 1_700_000_000_000
"""An arbitrary epoch-millisecond time for the claims the tests make."""
NEVER_STALE = 0
"""A ``stale_before_ms`` before every claim: no claim is stale."""
DONE = Reply.succeeded({"reservation": "r-1", "nested": {"qty": [1, 2]}})
"""A final reply the tests record."""


class IdempotencyStoreContract:
    """Contract tests for an IdempotencyStore; subclasses provide the ``store`` fixture."""

    async def test_the_first_claim_wins_and_later_ones_see_it(
        self, store: IdempotencyStore
    ) -> None:
        first = await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
        assert first.won
        assert first.replaced is None
        assert first.record.state is RecordState.IN_PROGRESS
        second = await store.claim("k", owner="b", now_ms=T0 + 1, stale_before_ms=NEVER_STALE)
        assert not second.won
        assert second.record.owner == "a"
        assert second.record.state is RecordState.IN_PROGRESS
        assert second.record.claimed_at_ms == T0
        assert await store.get("missing") is None

    async def test_complete_records_the_reply(self, store: IdempotencyStore) -> None:
        await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
        assert await store.complete("k", owner="a", reply=DONE, now_ms=T0 + 5)
        record = await store.get("k")
        assert record is not None
        assert record.state is RecordState.DONE
        assert record.reply == DONE
        assert record.updated_ms == T0 + 5
        later = await store.claim("k", owner="b", now_ms=T0 + 10**9, stale_before_ms=T0 + 10**8)
        assert not later.won, "a done record is never stale"
        assert later.record.reply == DONE

    async def test_a_rejection_round_trips(self, store: IdempotencyStore) -> None:
        rejected = Reply.rejected("out_of_stock", "only 1 left", {"left": 1, "sku": "A"})
        await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
        await store.complete("k", owner="a", reply=rejected, now_ms=T0)
        record = await store.get("k")
        assert record is not None
        assert record.reply == rejected

    async def test_only_the_owner_completes_or_releases(self, store: IdempotencyStore) -> None:
        await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
        assert not await store.complete("k", owner="b", reply=DONE, now_ms=T0)
        assert not await store.release("k", owner="b")
        assert not await store.complete("nope", owner="a", reply=DONE, now_ms=T0)
        record = await store.get("k")
        assert record is not None
        assert record.state is RecordState.IN_PROGRESS

    async def test_release_lets_a_retry_claim_again(self, store: IdempotencyStore) -> None:
        await store.claim("k", owner="a", now_ms=T0, stale_before_ms=NEVER_STALE)
        assert await store.release("k", owner="a")
        released = await store.get("k")
        assert released is not None, "a released attempt is remembered: it may have had effect"
        assert released.state is RecordState.ATTEMPTED
        assert not (await store.fence("k", owner="c", now_ms=T0)).won, "attempted: no fence"
        again = await store.claim("k", owner="b", now_ms=T0, stale_before_ms=NEVER_STALE)
        assert again.won
        assert again.replaced is not None
        assert again.replaced.state is RecordState.ATTEMPTED
        assert not (
            await store.claim("k", owner="d", now_ms=T0, stale_before_ms=NEVER_STALE)
        ).won, "once claimed again, the key is held"
        await store.complete("k", owner="b", reply=DONE, now_ms=T0)
        assert not await store.release("k", owner="b"), "a done record is never released"

    async def test_a_stale_claim_is_taken_over_once(self, store: IdempotencyStore) -> None:
        await store.claim("k", owner="dead", now_ms=T0, stale_before_ms=NEVER_STALE)
        fresh = await store.claim("k", owner="b", now_ms=T0 + 10, stale_before_ms=T0)
        assert not fresh.won, "claimed at exactly the boundary is not stale"
        taken = await store.claim("k", owner="b", now_ms=T0 + 20, stale_before_ms=T0 + 1)
        assert taken.won
        assert taken.replaced is not None
        assert taken.replaced.owner == "dead"
        assert taken.record.claimed_at_ms == T0 + 20
        again = await store.claim("k", owner="c", now_ms=T0 + 30, stale_before_ms=T0 + 1)
        assert not again.won
        assert again.record.owner == "b"
        assert not await store.complete("k", owner="dead", reply=DONE, now_ms=T0 + 40)
        assert await store.complete("k", owner="b", reply=DONE, now_ms=T0 + 40)

    async def test_fence_marks_an_absent_key_only(self, store: IdempotencyStore) -> None:
        fenced = await store.fence("f", owner="comp", now_ms=T0)
        assert fenced.won
        assert fenced.record.state is RecordState.FENCED
        claim = await store.claim("f", owner="fwd", now_ms=T0 + 10**9, stale_before_ms=T0 + 1)
        assert not claim.won, "a fenced record is never stale"
        assert claim.record.state is RecordState.FENCED
        assert not (await store.fence("f", owner="other", now_ms=T0)).won

        await store.claim("g", owner="fwd", now_ms=T0, stale_before_ms=NEVER_STALE)
        busy = await store.fence("g", owner="comp", now_ms=T0 + 10**9)
        assert not busy.won
        assert busy.record.state is RecordState.IN_PROGRESS

    async def test_concurrent_claims_have_one_winner(self, store: IdempotencyStore) -> None:
        claims = await asyncio.gather(
            *(
                store.claim("k", owner=f"o{n}", now_ms=T0, stale_before_ms=NEVER_STALE)
                for n in range(20)
            )
        )
        winners = [c.record.owner for c in claims if c.won]
        assert len(winners) == 1
        assert all(c.record.owner == winners[0] for c in claims)

    async def test_long_keys(self, store: IdempotencyStore) -> None:
        key = "svc:" + "s" * 600 + "/step/forward"
        assert (await store.claim(key, owner="a", now_ms=T0, stale_before_ms=0)).won
        record = await store.get(key)
        assert record is not None
        assert record.key == key

    async def test_abandon_releases_only_the_prefix_in_progress(
        self, store: IdempotencyStore
    ) -> None:
        # "_" and "%" are wildcards to SQL's LIKE: a prefix must match them literally.
        await store.claim("a", owner="svc/r_1/x", now_ms=T0, stale_before_ms=NEVER_STALE)
        await store.claim("b", owner="svc/r_1/y", now_ms=T0, stale_before_ms=NEVER_STALE)
        await store.claim("c", owner="svc/rx1/z", now_ms=T0, stale_before_ms=NEVER_STALE)
        await store.claim("d", owner="svc/r_1/w", now_ms=T0, stale_before_ms=NEVER_STALE)
        await store.complete("d", owner="svc/r_1/w", reply=DONE, now_ms=T0)
        assert await store.abandon(owner_prefix="svc/r_1/") == 2
        states = {key: (await store.get(key)) for key in "abcd"}
        assert {key: r.state if r else None for key, r in states.items()} == {
            "a": RecordState.ATTEMPTED,
            "b": RecordState.ATTEMPTED,
            "c": RecordState.IN_PROGRESS,
            "d": RecordState.DONE,
        }
        assert await store.abandon(owner_prefix="svc/r_1/") == 0
