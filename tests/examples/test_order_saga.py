"""The order saga against the real example services, in process, with duplicated messages."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from examples.order_saga import ORDER_SAGA, order_input
from saga import Coordinator, SagaStatus, SqlIdempotencyStore, StepKind
from saga.protocol import Command
from saga.testing import Fault, InMemorySagaLog, InMemoryTransport
from services import inventory, orders, payments, shipping
from services.common import Database

MODULES = {"orders": orders, "payments": payments, "inventory": inventory, "shipping": shipping}


class Shop:
    def __init__(self, folder: Path) -> None:
        self.dbs = {
            name: Database(f"sqlite:///{folder / name}.db", module.metadata)
            for name, module in MODULES.items()
        }
        self.stores = [SqlIdempotencyStore(db.url) for db in self.dbs.values()]

    async def open(self) -> list[Any]:
        participants = []
        for (name, module), store in zip(MODULES.items(), self.stores, strict=True):
            db = self.dbs[name]
            await db.open()
            await module.seed(db)
            options = {"flaky": 0.5} if name == "shipping" else {}
            participants.append(module.build(db, store, **options))
        return participants

    async def close(self) -> None:
        for store in self.stores:
            await store.close()
        for db in self.dbs.values():
            await db.close()

    async def value(self, service: str, query: sa.Select[Any]) -> Any:
        async with self.dbs[service].engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[tuple[Shop, list[Any]]]:
    s = Shop(tmp_path)
    participants = await s.open()
    yield s, participants
    await s.close()


def test_the_order_saga_has_its_pivot_then_retriable_steps() -> None:
    kinds = [(step.name, step.kind) for step in ORDER_SAGA.steps]
    assert kinds == [
        ("create_order", StepKind.COMPENSATABLE),
        ("reserve_credit", StepKind.COMPENSATABLE),
        ("reserve_stock", StepKind.COMPENSATABLE),
        ("approve_order", StepKind.PIVOT),
        ("capture_credit", StepKind.RETRIABLE),
        ("schedule_shipping", StepKind.RETRIABLE),
    ]
    assert ORDER_SAGA.steps[-1].policy.max_attempts is None


async def test_orders_complete_or_compensate_and_the_books_balance(
    shop: tuple[Shop, list[Any]],
) -> None:
    s, participants = shop
    rng = random.Random(7)

    def chaos(_command: Command) -> Fault:
        return rng.choice([Fault.DELIVER, Fault.DUPLICATE_COMMAND, Fault.DUPLICATE_REPLY])

    transport = InMemoryTransport(participants, intercept=chaos)
    cases = [
        (order_input("alice", {"apple": 2, "fig": 1}), SagaStatus.COMPLETED, []),
        (order_input("carol", {"pear": 1}), SagaStatus.COMPENSATED, ["create_order"]),
        (
            order_input("bob", {"apple": 1, "plum": 1}),
            SagaStatus.COMPENSATED,
            ["reserve_credit", "create_order"],
        ),
    ]
    async with Coordinator(InMemorySagaLog(), transport, sagas=[ORDER_SAGA]) as coordinator:
        for order, status, compensated in cases:
            result = await coordinator.execute(ORDER_SAGA, order)
            assert (result.status, result.compensated) == (status, compensated)

    accounts, stock = payments.accounts, inventory.stock
    credit = sa.select(accounts.c.available).where(accounts.c.customer == "alice")
    assert await s.value("payments", credit) == payments.DEMO_ACCOUNTS["alice"] - 2 * 120 - 900
    bob = sa.select(accounts.c.available).where(accounts.c.customer == "bob")
    assert await s.value("payments", bob) == payments.DEMO_ACCOUNTS["bob"]
    apples = sa.select(stock.c.available).where(stock.c.sku == "apple")
    assert await s.value("inventory", apples) == inventory.DEMO_STOCK["apple"] - 2
    shipped = sa.select(sa.func.count()).select_from(shipping.shipments)
    assert await s.value("shipping", shipped) == 1
    statuses = sa.select(sa.func.group_concat(orders.orders.c.status))
    assert sorted((await s.value("orders", statuses)).split(",")) == [
        "approved", "rejected", "rejected",
    ]  # fmt: skip
    ledger = sa.select(sa.func.count()).select_from(payments.ledger)
    assert await s.value("payments", ledger) == 4  # alice reserve+capture, bob reserve+release
