"""The example services' business rules, and their idempotency at the business level.

Handlers are driven through ``Participant.handle`` with real commands on SQLite files, and an
idempotency store that forgets everything: every repeat runs the handler again, as if the
SDK's record were lost, so each effect must be deduplicated by the service itself (by order id).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saga import Direction, Outcome, Participant
from saga.participant import Claim, IdempotencyRecord, IdempotencyStore, RecordState
from saga.protocol import Command, Reply
from services import inventory, orders, payments, shipping
from services.common import Database

_keys = itertools.count()


class ForgetfulStore(IdempotencyStore):
    """Remembers nothing: every command runs, every compensation runs as if its forward had."""

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, key: str) -> IdempotencyRecord | None:
        return None

    async def claim(self, key: str, *, owner: str, now_ms: int, stale_before_ms: int) -> Claim:
        return Claim(won=True, record=_record(key, owner, now_ms, RecordState.IN_PROGRESS))

    async def complete(self, key: str, *, owner: str, reply: Reply, now_ms: int) -> bool:
        return True

    async def release(self, key: str, *, owner: str) -> bool:
        return True

    async def fence(self, key: str, *, owner: str, now_ms: int) -> Claim:
        done = _record(key, owner, now_ms, RecordState.DONE, Reply.succeeded({}))
        return Claim(won=False, record=done)

    async def abandon(self, *, owner_prefix: str) -> int:
        return 0


def _record(
    key: str, owner: str, now_ms: int, state: RecordState, reply: Reply | None = None
) -> IdempotencyRecord:
    return IdempotencyRecord(
        key=key, state=state, owner=owner, claimed_at_ms=now_ms, updated_ms=now_ms, reply=reply
    )


class Harness:
    """One service built on a fresh SQLite file; ``send`` runs a command under a new key."""

    def __init__(self, db: Database, participant: Participant) -> None:
        self.db = db
        self.participant = participant

    async def send(
        self, command: str, payload: dict[str, Any], *, compensate: bool = False
    ) -> Reply:
        return await self.participant.handle(
            Command(
                saga_id=f"saga-{next(_keys)}", saga_name="order", step="step",
                direction=Direction.COMPENSATE if compensate else Direction.FORWARD,
                attempt=1, service=self.participant.name, command=command, payload=payload,
            )
        )  # fmt: skip

    async def rows(self, table: sa.Table) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(sa.select(table))]


Factory = Callable[..., Any]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Database] = []

    async def build(module: Any, **options: Any) -> Harness:
        url = f"sqlite:///{tmp_path / module.__name__}-{len(opened)}.db"
        db = Database(url, module.metadata)
        await db.open()
        await module.seed(db)
        opened.append(db)
        return Harness(db, module.build(db, ForgetfulStore(), **options))

    yield build
    for db in opened:
        await db.close()


def ok(reply: Reply) -> dict[str, Any]:
    assert reply.outcome is Outcome.SUCCEEDED, reply
    return dict(reply.result or {})


def no(reply: Reply) -> str:
    assert reply.outcome is Outcome.REJECTED, reply
    assert reply.error is not None
    return reply.error.code


async def available(h: Harness, table: sa.Table, key: str, value: str) -> int:
    return next(r["available"] for r in await h.rows(table) if r[key] == value)


async def test_payments_reserve_release_capture(make: Factory) -> None:
    h = await make(payments)
    reserve = {"order_id": "o1", "customer": "dave", "amount": 1_000}
    first = ok(await h.send("reserve", reserve))
    again = ok(await h.send("reserve", reserve))  # a new key: the SDK cannot dedupe this
    assert first == again == {"order_id": "o1", "customer": "dave", "amount": 1_000}
    assert await available(h, payments.accounts, "customer", "dave") == 59_000
    assert no(await h.send("reserve", {**reserve, "order_id": "o2", "customer": "carol"})) == (
        "insufficient_credit"
    )
    assert no(await h.send("reserve", {**reserve, "order_id": "o3", "customer": "eve"})) == (
        "unknown_customer"
    )
    assert no(await h.send("reserve", {**reserve, "order_id": "o4", "amount": -5})) == "bad_amount"

    assert ok(await h.send("release", reserve, compensate=True))["released"] == 1_000
    ok(await h.send("release", reserve, compensate=True))
    assert await available(h, payments.accounts, "customer", "dave") == 60_000
    assert no(await h.send("reserve", reserve)) == "order_cancelled"

    ok(await h.send("reserve", {**reserve, "order_id": "o5"}))
    assert ok(await h.send("capture", {"order_id": "o5"}))["captured"] == 1_000
    ok(await h.send("capture", {"order_id": "o5"}))
    assert no(await h.send("release", {"order_id": "o5"}, compensate=True)) == "captured"
    assert await available(h, payments.accounts, "customer", "dave") == 59_000
    kinds = sorted((r["order_id"], r["kind"]) for r in await h.rows(payments.ledger))
    assert kinds == [("o1", "release"), ("o1", "reserve"), ("o5", "capture"), ("o5", "reserve")]


async def test_payments_release_before_reserve_fences_the_order(make: Factory) -> None:
    h = await make(payments)
    request = {"order_id": "late", "customer": "alice", "amount": 10}
    assert ok(await h.send("release", request, compensate=True))["released"] == 0
    assert no(await h.send("reserve", request)) == "order_cancelled"
    assert await h.rows(payments.ledger) == []


async def test_payments_capture_without_a_reservation_is_transient(make: Factory) -> None:
    h = await make(payments)
    reply = await h.send("capture", {"order_id": "nothing"})
    assert reply.outcome is Outcome.FAILED  # after the pivot: retried and visible, never a "no"


async def test_inventory_reserves_all_lines_or_none(make: Factory) -> None:
    h = await make(inventory)
    order = {"order_id": "o1", "items": [{"sku": "fig", "qty": 3}, {"sku": "apple", "qty": 2}]}
    assert ok(await h.send("reserve", order))["items"] == [
        {"sku": "fig", "qty": 3},
        {"sku": "apple", "qty": 2},
    ]
    ok(await h.send("reserve", order))
    assert await available(h, inventory.stock, "sku", "fig") == 17
    blocked = {"order_id": "o2", "items": [{"sku": "fig", "qty": 1}, {"sku": "plum", "qty": 1}]}
    assert no(await h.send("reserve", blocked)) == "out_of_stock"
    assert await available(h, inventory.stock, "sku", "fig") == 17  # the fig line rolled back
    assert no(await h.send("reserve", {"order_id": "o3", "items": []})) == "bad_request"

    assert ok(await h.send("release", order, compensate=True))["items"] == [
        {"sku": "apple", "qty": 2},
        {"sku": "fig", "qty": 3},
    ]
    ok(await h.send("release", order, compensate=True))
    assert await available(h, inventory.stock, "sku", "fig") == 20
    assert await available(h, inventory.stock, "sku", "apple") == 100_000
    assert no(await h.send("reserve", order)) == "order_cancelled"
    assert len(await h.rows(inventory.ledger)) == 4  # two lines reserved, two released


async def test_orders_pending_then_approved_or_rejected(make: Factory) -> None:
    h = await make(orders)
    order = {
        "order_id": "o1", "customer": "alice",
        "items": [{"sku": "apple", "qty": 2, "unit_price": 120}],
    }  # fmt: skip
    assert ok(await h.send("create", order)) == {"order_id": "o1", "total": 240}
    assert ok(await h.send("create", order)) == {"order_id": "o1", "total": 240}
    ok(await h.send("approve", {"order_id": "o1"}))
    ok(await h.send("approve", {"order_id": "o1"}))
    assert no(await h.send("reject", order, compensate=True)) == "approved"

    other = {**order, "order_id": "o2"}
    ok(await h.send("create", other))
    ok(await h.send("reject", other, compensate=True))
    assert no(await h.send("approve", {"order_id": "o2"})) == "not_pending"

    ok(await h.send("reject", {**order, "order_id": "o3"}, compensate=True))  # before create
    assert no(await h.send("create", {**order, "order_id": "o3"})) == "order_rejected"
    assert no(await h.send("create", {**order, "order_id": "o4", "items": []})) == "bad_request"

    statuses = {r["order_id"]: r["status"] for r in await h.rows(orders.orders)}
    assert statuses == {"o1": "approved", "o2": "rejected", "o3": "rejected"}
    history = sorted((r["order_id"], r["status"]) for r in await h.rows(orders.history))
    assert history == [
        ("o1", "approved"), ("o1", "pending"), ("o2", "pending"), ("o2", "rejected"),
        ("o3", "rejected"),
    ]  # fmt: skip


async def test_shipping_fails_transiently_and_books_once(make: Factory) -> None:
    down = await make(shipping, flaky=1.0)
    reply = await down.send("schedule", {"order_id": "o1", "customer": "alice", "items": []})
    assert reply.outcome is Outcome.FAILED
    assert reply.error is not None
    assert "CourierUnavailableError" in reply.error.message

    up = await make(shipping, flaky=0.0)
    first = ok(await up.send("schedule", {"order_id": "o2", "customer": "alice", "items": []}))
    again = ok(await up.send("schedule", {"order_id": "o2", "customer": "alice", "items": []}))
    assert first == again
    assert [r["order_id"] for r in await up.rows(shipping.shipments)] == ["o2"]
