"""GET /api/stats: counts by status and health, and per-minute figures over a window."""

from __future__ import annotations

from aiohttp import web

from saga.api import params
from saga.api.context import context
from saga.api.ops_models import (
    FailingStepOut,
    MinuteOut,
    NameOut,
    StatsQuery,
    StatsReply,
    Window,
)
from saga.events import Health
from saga.log.tally import MINUTE_MS


async def stats(request: web.Request) -> web.Response:
    """GET /api/stats: counts over every saga now (as GET /api/sagas would list them with the
    same status or health filter), and over the last ``minutes`` the sagas started,
    completed, compensated and stuck per minute, durations and compensation rate per saga
    name, and the steps that failed most."""
    ctx = context(request)
    query = params.query(StatsQuery, request.query)
    now = ctx.coordinator.clock.now_ms()
    until = now - now % MINUTE_MS + MINUTE_MS  # the current minute, so far, is the last
    since = until - query.minutes * MINUTE_MS
    tally = await ctx.coordinator.log.tally(since, until, stalled_before_ms=ctx.stalled_before_ms())
    reply = StatsReply(
        window=Window(since_ms=since, until_ms=until, minutes=query.minutes),
        statuses=dict(tally.statuses),
        healths=dict(tally.healths),
        stuck=tally.healths[Health.STUCK],
        needs_attention=tally.healths[Health.NEEDS_ATTENTION],
        series=[
            MinuteOut(
                start_ms=m.start_ms,
                started=m.started,
                completed=m.completed,
                compensated=m.compensated,
                stuck=m.stuck,
            )
            for m in tally.minutes
        ],
        by_name=[
            NameOut(
                name=n.name,
                completed=n.completed,
                compensated=n.compensated,
                compensation_rate=round(n.compensation_rate, 4),
                p50_ms=n.p50_ms,
                p99_ms=n.p99_ms,
            )
            for n in tally.names
        ],
        failing_steps=[
            FailingStepOut(name=f.name, step=f.step, direction=f.direction, failures=f.failures)  # type: ignore[arg-type]
            for f in tally.failing_steps
        ],
    )
    return web.json_response(reply.model_dump(mode="json"))
