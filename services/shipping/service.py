"""shipping: schedule one delivery per approved order, with a courier that is sometimes down.

The step runs after the saga's pivot, so it is retried until it succeeds and never rejected.
``flaky`` is the probability that an attempt fails transiently, half the time before the
delivery is booked and half the time after (the reply is lost), so retries must not book
twice: ``shipments`` has one row per order, unique.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import sqlalchemy as sa

from saga import CommandContext, Participant
from saga.participant import IdempotencyStore
from services.common import Database, now_ms

metadata = sa.MetaData()

shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("customer", sa.String(100), nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("delivery_date", sa.String(10), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)


class CourierUnavailableError(Exception):
    """The courier's booking API did not answer: transient, the coordinator retries."""


async def seed(db: Database) -> int:
    """Shipments start empty; nothing to seed."""
    return 0


def build(
    db: Database,
    store: IdempotencyStore,
    *,
    instance: str | None = None,
    flaky: float = 0.0,
    rng: random.Random | None = None,
) -> Participant:
    shipping = Participant("shipping", store=store, instance=instance, description="deliveries")
    chance = rng or random.Random()

    @shipping.command("schedule", transactional=store.joins_transactions)
    async def schedule(ctx: CommandContext, req: dict[str, Any]) -> dict[str, Any]:
        order_id = str(req.get("order_id") or ctx.saga_id)
        draw = chance.random()
        if draw < flaky / 2:
            raise CourierUnavailableError("courier booking timed out (before booking)")
        async with db.effect(ctx) as conn:
            found = await conn.execute(
                sa.select(shipments.c.delivery_date).where(shipments.c.order_id == order_id)
            )
            row = found.first()
            if row is not None:
                delivery = str(row.delivery_date)
            else:
                delivery = (dt.date.today() + dt.timedelta(days=2)).isoformat()
                await conn.execute(
                    shipments.insert().values(
                        order_id=order_id, customer=str(req.get("customer", "")),
                        items=json.dumps(req.get("items", [])), delivery_date=delivery,
                        created_ms=now_ms(),
                    )
                )  # fmt: skip
        if draw < flaky:
            raise CourierUnavailableError("courier confirmation lost (after booking)")
        return {"order_id": order_id, "delivery_date": delivery}

    return shipping
