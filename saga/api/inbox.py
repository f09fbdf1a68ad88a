"""GET /api/inbox: what needs a person now, each with why, where, since when and what fits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from saga.api import params, views
from saga.api.context import context
from saga.api.ops_models import InboxItem, InboxQuery, InboxReply
from saga.api.problems import bad_request
from saga.api.story import human_text
from saga.engine import SagaState, replay
from saga.errors import QueryError
from saga.events import Event, EventType, Health, SagaStatus
from saga.log.base import SagaQuery, SagaRecord
from saga.protocol import Direction

_FAILURES = (EventType.STEP_FAILED, EventType.STEP_REJECTED)


def _message(error: Any) -> str | None:
    if isinstance(error, dict):
        message = error.get("message") or error.get("code")
        return None if message is None else human_text(str(message))
    return None


def _since(events: list[Event], step: str | None, direction: str | None, fallback: int) -> int:
    """The first failure of ``step`` in ``direction`` since an operator last acted on the saga
    (a retry starts a new trouble), else when it got stuck, else ``fallback``."""
    start = 0
    for index, event in enumerate(events):
        if event.type in (EventType.OPERATOR_ACTION, EventType.SAGA_RESUMED):
            start = index + 1
    for event in events[start:]:
        if (
            event.type in _FAILURES
            and event.data.get("step") == step
            and event.data.get("direction", Direction.FORWARD.value) == direction
        ):
            return event.at_ms
    for event in events[start:]:
        if event.type is EventType.SAGA_STUCK:
            return event.at_ms
    return fallback


def _reason(state: SagaState, kind: str, stalled: bool) -> str:
    pointer = state.pointer
    what = "a step"
    if pointer is not None:
        compensating = pointer.direction is Direction.COMPENSATE
        what = f"the compensation of {pointer.step}" if compensating else pointer.step
    if state.stuck is not None:
        reason = human_text(str(state.stuck.get("reason") or "stuck"))
        error = _message(state.stuck.get("error"))
        return reason if error is None or error in reason else f"{reason}: {error}"
    if stalled:
        return "no progress for longer than the configured stall limit"
    error = _message(None if pointer is None else pointer.last_error)
    attempts = ""
    if pointer is not None:
        attempts = " once" if pointer.attempts == 1 else f" {pointer.attempts} times"
    said = f"{what} failed{attempts}"
    if kind == "needs_attention":
        said += " after the pivot (retried, never compensated)"
    return said if error is None else f"{said}: {error}"


async def inbox(request: web.Request) -> web.Response:
    """GET /api/inbox: stuck and needs-attention sagas, and failing compensations."""
    ctx = context(request)
    query = params.query(InboxQuery, request.query)
    log = ctx.coordinator.log
    stalled = ctx.stalled_before_ms()
    try:
        troubled = SagaQuery(
            healths=[Health.STUCK, Health.NEEDS_ATTENTION],
            name=query.name,
            stalled_before_ms=stalled,
            limit=query.limit,
        )
        compensating = SagaQuery(
            statuses=[SagaStatus.COMPENSATING], name=query.name, limit=query.limit
        )
    except QueryError as exc:
        raise bad_request(exc.message) from exc
    records: dict[str, SagaRecord] = {}
    for found in (await log.find(troubled), await log.find(compensating)):
        records.update((r.saga_id, r) for r in found.sagas)
    events = await log.events_many(list(records))
    by_hand = await log.done_by_hand(list(records))
    items: list[InboxItem] = []
    for saga_id, record in records.items():
        if not events[saga_id]:
            continue
        state = replay(events[saga_id])
        if state.is_final:
            continue  # finished since the list was read
        summary = views.summary(record, stalled)
        health = summary["health"]
        pointer = state.pointer
        if health in (Health.STUCK.value, Health.NEEDS_ATTENTION.value):
            kind = health
        elif pointer is not None and pointer.direction is Direction.COMPENSATE and state.failing:
            kind = "failing_compensation"
        else:
            continue  # compensating, and going well
        is_stalled = state.stuck is None and health == Health.STUCK.value
        step = None if pointer is None else pointer.step
        direction = None if pointer is None else pointer.direction.value
        defn = ctx.coordinator.registry.get(state.name, state.version)
        allowed = [name for name, fit in views.actions(defn, state).items() if fit["allowed"]]
        items.append(
            InboxItem(
                saga_id=saga_id,
                name=record.name,
                status=record.status,
                kind=kind,
                reason=_reason(state, kind, is_stalled),
                step=step,
                direction=direction,  # type: ignore[arg-type]
                service=None if pointer is None or pointer.is_wait else pointer.service,
                attempts=None if pointer is None else pointer.attempts,
                since_ms=_since(events[saga_id], step, direction, record.updated_ms),
                updated_ms=record.updated_ms,
                actions=allowed,
                by_hand=saga_id in by_hand,
            )
        )
    items.sort(key=lambda item: (item.since_ms, item.saga_id))
    counts = {kind: 0 for kind in ("stuck", "needs_attention", "failing_compensation")}
    for item in items:
        counts[item.kind] += 1
    reply = InboxReply(items=items, counts=counts)
    return web.json_response(reply.model_dump(mode="json"))
