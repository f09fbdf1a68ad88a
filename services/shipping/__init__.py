"""shipping: schedule a delivery for an approved order (retriable: may fail, never says no)."""

from services.shipping.service import build, metadata, seed, shipments

__all__ = ["build", "metadata", "seed", "shipments"]
