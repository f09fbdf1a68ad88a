"""POST /api/bulk/{action}: retry, resolve or cancel many sagas with one reason.

Each saga goes through ``Coordinator.act``, the single action's path: one audit entry per
saga, the same refusals. A dry run previews each saga's outcome and changes nothing.
"""

from __future__ import annotations

from aiohttp import web

from saga.api import params
from saga.api.context import context, identity
from saga.api.ops_models import (
    MAX_BULK,
    BulkFilter,
    BulkItem,
    BulkReply,
    BulkRequest,
)
from saga.api.problems import ApiError, invalid
from saga.engine import Action
from saga.errors import QueryError, SagaNotFoundError, StateError
from saga.log.base import SagaQuery
from saga.log.paging import MAX_PAGE_SIZE

BULK_ACTIONS = (Action.RETRY, Action.RESOLVE, Action.CANCEL)
"""The actions that can be taken on many sagas at once."""


def _query(chosen: BulkFilter, stalled_before_ms: int | None) -> SagaQuery:
    try:
        return SagaQuery(
            statuses=chosen.status,
            name=chosen.name,
            healths=chosen.health,
            current_step=chosen.step,
            saga_id_prefix=chosen.saga_id_prefix,
            input_equals=sorted((chosen.input or {}).items()),
            stalled_before_ms=stalled_before_ms,
            limit=min(MAX_BULK + 1, MAX_PAGE_SIZE),
        )
    except QueryError as exc:
        raise invalid(exc.message) from exc


async def bulk(request: web.Request) -> web.Response:
    """POST /api/bulk/{action}: the action (or its dry run) on each chosen saga, in turn."""
    ctx = context(request)
    name = request.match_info["action"]
    action = next((a for a in BULK_ACTIONS if a.value == name), None)
    if action is None:
        allowed = ", ".join(a.value for a in BULK_ACTIONS)
        raise ApiError(404, f"no bulk action {name!r}; one of {allowed}")
    body = await params.body(BulkRequest, request)
    if body.saga_ids is not None:
        chosen = list(dict.fromkeys(body.saga_ids))
    else:
        assert body.filter is not None  # the model wants one of the two
        page = await ctx.coordinator.log.find(_query(body.filter, ctx.stalled_before_ms()))
        if page.next_cursor is not None or len(page.sagas) > MAX_BULK:
            raise invalid(f"the filter matches more than {MAX_BULK} sagas; narrow it")
        chosen = [record.saga_id for record in page.sagas]
    token = identity(request)
    actor = body.actor
    if token is None:
        who = actor or "anonymous"
    else:
        who = token.name if actor is None else f"{actor} (token {token.name})"
    items: list[BulkItem] = []
    for saga_id in chosen:
        try:
            preview = await ctx.coordinator.act(
                saga_id, action, actor=who, reason=body.reason.strip(), dry_run=body.dry_run
            )
        except SagaNotFoundError:
            items.append(_item(saga_id, "not_found", f"no saga {saga_id!r}"))
        except StateError as exc:
            items.append(_item(saga_id, "refused", exc.message))
        else:
            items.append(
                BulkItem(
                    saga_id=saga_id,
                    outcome="ok",
                    reason=None,
                    status=preview.status,
                    compensations=list(preview.compensations),
                )
            )
    ok = sum(1 for item in items if item.outcome == "ok")
    reply = BulkReply(
        action=action.value,  # type: ignore[arg-type]
        dry_run=body.dry_run,
        ok=ok,
        refused=len(items) - ok,
        items=items,
    )
    return web.json_response(reply.model_dump(mode="json"))


def _item(saga_id: str, outcome: str, reason: str) -> BulkItem:
    return BulkItem(
        saga_id=saga_id,
        outcome=outcome,  # type: ignore[arg-type]
        reason=reason,
        status=None,
        compensations=[],
    )
