"""GET /api/coordinators: the coordinators sharing the log, their leases and their load."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from saga.api.context import context
from saga.log.ownership import Member

ENDED_WITHIN_MS = 600_000
"""Coordinators whose lease ended this recently are listed too (stopped or expired)."""


def member_state(member: Member, now_ms: int) -> str:
    """``live`` while the lease lasts; ``stopped`` after a clean close; ``expired`` when the
    lease ran out without one (the process died, was paused, or restarted under its name)."""
    if member.stopped_ms is not None:
        return "stopped"
    return "live" if member.lease_until_ms >= now_ms else "expired"


async def list_coordinators(request: web.Request) -> web.Response:
    """Every live coordinator and those that ended in the last ten minutes, as the log knows
    them: the load is what each reported at its last renewal; ``now_ms`` is the database's
    clock, against which leases are judged."""
    coordinator = context(request).coordinator
    ownership = coordinator.log.ownership
    members = await ownership.members(include_ended_ms=ENDED_WITHIN_MS)
    now_ms = (await ownership.census()).now_ms
    this = coordinator.coordinator_id
    found: list[dict[str, Any]] = [
        {
            "coordinator_id": m.coordinator_id,
            "name": m.name,
            "api_url": m.api_url,
            "started_ms": m.started_ms,
            "renewed_ms": m.renewed_ms,
            "lease_until_ms": m.lease_until_ms,
            "stopped_ms": m.stopped_ms,
            "state": member_state(m, now_ms),
            "sagas": m.sagas,
            "in_flight": m.in_flight,
            "fenced_writes": m.fenced_writes,
            "self": m.coordinator_id == this,
        }
        for m in members
    ]
    return web.json_response(
        {"this": this, "lease_ms": coordinator.lease_ms, "now_ms": now_ms, "coordinators": found}
    )
