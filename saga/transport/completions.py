"""Completion announcements as messages: what a participant publishes on ``saga.completions``.

A participant that completes, rejects, fails or heartbeats an accepted command publishes a
message with the command's headers and an empty body on ``COMPLETIONS_SUBJECT`` (see
``saga.protocol``). It carries no outcome: the saga's owner re-sends the command, and the
participant's recorded reply is the outcome. So a malformed or forged announcement can cost at
most one re-send; one that cannot be read is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from saga.errors import ProtocolError
from saga.names import check_saga_id, is_name
from saga.protocol import (
    HEADER_DIRECTION,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_SAGA_ID,
    HEADER_STEP,
    Direction,
    idempotency_key,
)


@dataclass(frozen=True, kw_only=True)
class Completion:
    """One announcement: the accepted command (saga, step, direction) has news."""

    saga_id: str
    step: str
    direction: Direction

    def headers(self) -> dict[str, str]:
        """The headers a participant publishes (with the command's idempotency key)."""
        return {
            HEADER_SAGA_ID: self.saga_id,
            HEADER_STEP: self.step,
            HEADER_DIRECTION: self.direction.value,
            HEADER_IDEMPOTENCY_KEY: idempotency_key(self.saga_id, self.step, self.direction),
        }

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> Completion:
        """Parse an announcement's headers; ProtocolError naming what is wrong.

        ``Idempotency-Key`` is optional; when present it must match the other three.
        """
        headers = headers or {}
        missing = [h for h in (HEADER_SAGA_ID, HEADER_STEP, HEADER_DIRECTION) if not headers.get(h)]
        if missing:
            raise ProtocolError(f"completion is missing headers: {', '.join(missing)}")
        saga_id = check_saga_id(headers[HEADER_SAGA_ID])
        step = headers[HEADER_STEP]
        if not is_name(step):
            raise ProtocolError(f"header {HEADER_STEP} {step[:60]!r} is not a name")
        try:
            direction = Direction(headers[HEADER_DIRECTION])
        except ValueError as exc:
            raise ProtocolError(
                f"header {HEADER_DIRECTION} must be 'forward' or 'compensate',"
                f" not {headers[HEADER_DIRECTION][:60]!r}"
            ) from exc
        key = headers.get(HEADER_IDEMPOTENCY_KEY)
        if key is not None and key != idempotency_key(saga_id, step, direction):
            raise ProtocolError(
                f"header {HEADER_IDEMPOTENCY_KEY} {key[:120]!r} does not match saga, step and"
                " direction"
            )
        return cls(saga_id=saga_id, step=step, direction=direction)
