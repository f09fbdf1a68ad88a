"""A little shop with real business state (credit, stock, orders), for exploring sagas."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from saga import (
    CommandContext,
    Participant,
    Rejected,
    RetryPolicy,
    Saga,
    SagaStatus,
    Step,
    StepKind,
)
from saga.coordinator import SagaResult

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=100), max_attempts=3)
ORDER = {"customer": "alice", "sku": "widget", "qty": 2, "price": 30}
CREDIT, STOCK = 100, 5


class Shop:
    """Three services over dicts, idempotent by saga id (a retry after a handler that took
    effect and then failed must not take it again). ``bug`` names a compensation that forgets
    to undo its step, ``"reserve_stock_twice"``: a reservation that is not idempotent, or
    ``"release_needs_result"``: a release that undoes only what the forward reply said."""

    def __init__(self, bug: str | None = None) -> None:
        self.credit = {"alice": CREDIT}
        self.stock = {"widget": STOCK}
        self.orders: dict[str, str] = {}
        self.shipped: list[str] = []
        self.charged: dict[str, int] = {}
        self.credit_held: dict[str, int] = {}
        self.stock_held: dict[str, int] = {}
        self.bug = bug
        orders, payments, inventory, shipping = (
            Participant(name) for name in ("orders", "payments", "inventory", "shipping")
        )
        self.participants = [orders, payments, inventory, shipping]

        @orders.command("create")
        async def create(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            self.orders[ctx.saga_id] = "created"
            return {"order_id": ctx.saga_id}

        @orders.command("cancel")
        async def cancel(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if ctx.saga_id in self.orders:
                self.orders[ctx.saga_id] = "cancelled"
            return {}

        @payments.command("reserve")
        async def reserve_credit(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            amount = request["qty"] * request["price"]
            if ctx.saga_id in self.credit_held:
                return {"amount": self.credit_held[ctx.saga_id]}
            if self.credit[request["customer"]] < amount:
                raise Rejected("not enough credit", code="insufficient_credit")
            self.credit[request["customer"]] -= amount
            self.credit_held[ctx.saga_id] = amount
            return {"amount": amount}

        @payments.command("release")
        async def release_credit(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            # What was held, whatever the forward reply said: nothing held is nothing to undo.
            amount = self.credit_held.pop(ctx.saga_id, 0)
            if self.bug != "release_credit":
                self.credit[request["customer"]] += amount
            return {}

        @payments.command("charge")
        async def charge(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            self.charged[ctx.saga_id] = request["price"]
            return {}

        @inventory.command("reserve")
        async def reserve_stock(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if ctx.saga_id in self.stock_held and self.bug != "reserve_stock_twice":
                return {"qty": self.stock_held[ctx.saga_id]}
            if self.stock[request["sku"]] < request["qty"]:
                raise Rejected("out of stock", code="out_of_stock")
            self.stock[request["sku"]] -= request["qty"]
            self.stock_held[ctx.saga_id] = self.stock_held.get(ctx.saga_id, 0) + request["qty"]
            return {"qty": request["qty"]}

        @inventory.command("release")
        async def release_stock(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            qty = self.stock_held.pop(ctx.saga_id, 0)
            if self.bug == "release_needs_result":
                # Undoes only what the recorded reply says: nothing after a failed attempt.
                qty = ctx.forward_result["qty"] if ctx.forward_result is not None else 0
            if self.bug != "release_stock":
                self.stock[request["sku"]] += qty
            return {}

        @shipping.command("ship")
        async def ship(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if ctx.saga_id not in self.shipped:
                self.shipped.append(ctx.saga_id)
            return {}


def order_saga() -> Saga:
    return Saga(
        name="order",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel",
                 retry=FAST, compensation_retry=FAST),
            Step(name="stock", service="inventory", command="reserve", compensation="release",
                 retry=FAST, compensation_retry=FAST),
            Step(name="credit", service="payments", command="reserve", compensation="release",
                 retry=FAST, compensation_retry=FAST),
        ),
    )  # fmt: skip


def pivot_saga() -> Saga:
    return Saga(
        name="checkout",
        steps=(
            Step(name="create", service="orders", command="create", compensation="cancel",
                 retry=FAST, compensation_retry=FAST),
            Step(name="charge", service="payments", command="charge", kind=StepKind.PIVOT,
                 retry=FAST),
            Step(name="ship", service="shipping", command="ship", kind=StepKind.RETRIABLE,
                 retry=RetryPolicy(initial_interval=timedelta(milliseconds=100),
                                   max_attempts=None)),
        ),
    )  # fmt: skip


def books_balance(shop: Shop, result: SagaResult) -> None:
    """Completed: credit and stock moved exactly once. Compensated: both are back."""
    spent = ORDER["qty"] * ORDER["price"]
    if result.status is SagaStatus.COMPLETED:
        assert shop.credit["alice"] == CREDIT - spent, (
            f"credit is {shop.credit['alice']} after completion, expected {CREDIT - spent}"
        )
        assert shop.stock["widget"] == STOCK - ORDER["qty"]
    elif result.status is SagaStatus.COMPENSATED:
        assert shop.credit["alice"] == CREDIT, (
            f"credit for customer 'alice' is {shop.credit['alice']} after compensation,"
            f" expected {CREDIT}"
        )
        assert shop.stock["widget"] == STOCK, (
            f"stock of 'widget' is {shop.stock['widget']} after compensation, expected {STOCK}"
        )
        assert set(shop.orders.values()) <= {"cancelled"}
