"""GET /api/services: flow control per participant service (queued, in flight, limit)."""

from __future__ import annotations

from aiohttp import web

from saga.api.context import context


async def list_services(request: web.Request) -> web.Response:
    """Every service this coordinator has sent to: commands waiting for a slot, commands in
    flight, and the current in-flight limit (null: unbounded)."""
    loads = context(request).coordinator.service_load()
    return web.json_response(
        {
            "services": [
                {
                    "service": load.service,
                    "queued": load.queued,
                    "in_flight": load.in_flight,
                    "limit": load.limit,
                }
                for load in loads
            ]
        }
    )
