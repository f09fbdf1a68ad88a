"""payments: customer credit. Reserve credit for an order, release it, capture it."""

from services.payments.service import (
    DEMO_ACCOUNTS,
    accounts,
    build,
    ledger,
    metadata,
    reservations,
    seed,
)

__all__ = ["DEMO_ACCOUNTS", "accounts", "build", "ledger", "metadata", "reservations", "seed"]
