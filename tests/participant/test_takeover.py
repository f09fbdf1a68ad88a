"""A replica restarted under the same instance name takes back its dead run's claims at once."""

from __future__ import annotations

from typing import Any

import pytest

from saga.clock import SystemClock
from saga.participant import (
    CommandContext,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    Participant,
    SqlIdempotencyStore,
)
from saga.protocol import Command, Direction, Outcome


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> Any:
    chosen: IdempotencyStore = (
        InMemoryIdempotencyStore() if request.param == "memory" else SqlIdempotencyStore(sqlite_url)
    )
    await chosen.open()
    yield chosen
    await chosen.close()


def payments(store: IdempotencyStore, instance: str | None, runs: list[str]) -> Participant:
    participant = Participant("payments", store=store, instance=instance)

    @participant.command("reserve")
    async def reserve(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
        runs.append(ctx.saga_id)
        return {"ok": True}

    return participant


def command(saga_id: str) -> Command:
    return Command(
        saga_id=saga_id, saga_name="order", step="credit", direction=Direction.FORWARD,
        attempt=2, service="payments", command="reserve",
    )  # fmt: skip


async def test_restarted_instance_releases_its_dead_claims_only(store: IdempotencyStore) -> None:
    runs: list[str] = []
    now = SystemClock().now_ms()  # read here: a module-level time goes stale in a long run
    # Claimed just now, so they are not stale: only take-over can release them.
    # A run of payments-1 died mid-handler for saga s1; payments-2 is mid-handler for s2.
    dead = await store.claim(
        "payments:s1/credit/forward", owner="payments/payments-1/aaa", now_ms=now, stale_before_ms=0
    )
    alive = await store.claim(
        "payments:s2/credit/forward", owner="payments/payments-2/bbb", now_ms=now, stale_before_ms=0
    )
    assert dead.won
    assert alive.won

    restarted = payments(store, "payments-1", runs)
    busy = await restarted.handle(command("s1"))
    assert busy.outcome is Outcome.FAILED  # before take-over the dead claim blocks the retry

    assert await restarted.take_over() == 1
    reply = await restarted.handle(command("s1"))
    assert reply.outcome is Outcome.SUCCEEDED
    assert runs == ["s1"]
    still_busy = await restarted.handle(command("s2"))
    assert still_busy.outcome is Outcome.FAILED  # another live replica's claim is untouched


async def test_no_instance_name_means_no_take_over(store: IdempotencyStore) -> None:
    anonymous = payments(store, None, [])
    assert await anonymous.take_over() == 0


def test_instance_name_is_validated() -> None:
    from saga.errors import DefinitionError

    with pytest.raises(DefinitionError, match="instance"):
        Participant("payments", instance="bad name")
