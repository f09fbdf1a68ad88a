"""The travel example: one trip booked, one compensated through a chain of three."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from examples.travel.__main__ import book_trips
from saga.transport.nats_server import NatsServer

REPO = Path(__file__).resolve().parents[2]

EXPECTED = [
    "trip-1 for Ada: completed",
    "  flight: hold for Ada",
    "  hotel: book for Ada",
    "  car: rent for Ada",
    "  flight: ticketed TP1351 for Ada",
    "trip-2 for Bo: compensated",
    "  flight: hold for Bo",
    "  hotel: book for Bo",
    "  car: rent for Bo",
    "  car: cancelled for Bo",
    "  hotel: cancelled for Bo",
    "  flight: cancelled for Bo",
    "  compensated, in order: rent_car, book_hotel, hold_flight",
]


async def test_travel_in_memory() -> None:
    assert await book_trips() == EXPECTED


async def test_travel_over_nats(nats_server: NatsServer) -> None:
    assert await book_trips(nats_server.url) == EXPECTED


def test_python_m_examples_travel_prints_both_trips() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.travel"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED
