"""Keyset pagination shared by the SagaLog adapters: limit checks and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json

from saga.errors import QueryError

MAX_PAGE_SIZE = 1000
"""The largest ``limit`` ``SagaLog.find`` accepts."""


def check_limit(limit: int) -> None:
    """Raise QueryError unless ``1 <= limit <= MAX_PAGE_SIZE``."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise QueryError(f"limit must be an int, got {type(limit).__name__}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise QueryError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")


def encode_cursor(created_ms: int, saga_id: str) -> str:
    """An opaque, URL-safe cursor pointing just after the saga (created_ms, saga_id)."""
    raw = json.dumps([created_ms, saga_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (created_ms, saga_id) inside a cursor; QueryError if it was not made here."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise QueryError(f"invalid cursor {cursor!r}") from exc
    match value:
        case [int() as created_ms, str() as saga_id] if not isinstance(created_ms, bool):
            return created_ms, saga_id
    raise QueryError(f"invalid cursor {cursor!r}")
