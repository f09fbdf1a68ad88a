"""Requests and answers of the operator overview routes (stats, inbox, bulk actions), as
pydantic models: they validate what comes in and describe it in ``/openapi.json``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from saga.api.problems import ApiError
from saga.events import Health, SagaStatus

MAX_BULK = 200
"""The most sagas one bulk action takes."""
MAX_REASON = 2000
"""The longest reason an operator action records (as a single action's)."""

_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse(model: type[_M], data: Any, *, status: int = 400) -> _M:
    """``data`` as ``model``, or an ApiError (``status``) naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise ApiError(status, f"{where}: {first['msg']}") from exc


# -- GET /api/stats ----------------------------------------------------------------------------


class StatsQuery(_Strict):
    """The query string of GET /api/stats."""

    minutes: int = Field(60, ge=1, le=1440, description="The window: the last N minutes.")


class Window(_Strict):
    since_ms: int = Field(description="The window's first millisecond (a minute boundary).")
    until_ms: int = Field(description="The first millisecond after it (the next minute).")
    minutes: int


class MinuteOut(_Strict):
    start_ms: int = Field(description="The minute's first millisecond.")
    started: int
    completed: int
    compensated: int
    stuck: int = Field(description="Sagas that became stuck in the minute.")


class NameOut(_Strict):
    name: str
    completed: int = Field(description="Finished completed in the window.")
    compensated: int = Field(description="Finished compensated in the window.")
    compensation_rate: float = Field(description="compensated / finished, 0 to 1.")
    p50_ms: int = Field(description="Median duration of the sagas finished in the window.")
    p99_ms: int = Field(description="99th percentile duration (nearest rank).")


class FailingStepOut(_Strict):
    name: str = Field(description="The saga name.")
    step: str
    direction: Literal["forward", "compensate"]
    failures: int = Field(description="Failed attempts in the window.")


class StatsReply(_Strict):
    """Counts over every saga now (they match GET /api/sagas with the same status or health
    filter), and figures over the window."""

    window: Window
    statuses: dict[SagaStatus, int]
    healths: dict[Health, int] = Field(description="Unfinished sagas by effective health.")
    stuck: int = Field(description="Sagas whose health is stuck (stalled ones included).")
    needs_attention: int
    series: list[MinuteOut] = Field(description="One entry per minute, oldest first.")
    by_name: list[NameOut]
    failing_steps: list[FailingStepOut] = Field(description="The steps that failed most.")


# -- GET /api/inbox ----------------------------------------------------------------------------


class InboxQuery(_Strict):
    """The query string of GET /api/inbox."""

    name: str | None = Field(None, max_length=200, description="Only sagas of this name.")
    limit: int = Field(100, ge=1, le=200, description="The most items of each kind.")


class InboxItem(_Strict):
    saga_id: str
    name: str
    status: SagaStatus
    kind: Literal["stuck", "needs_attention", "failing_compensation"]
    reason: str = Field(description="Why it needs a person, in words.")
    step: str | None
    direction: Literal["forward", "compensate"] | None
    service: str | None = Field(description="The service the failing step calls.")
    attempts: int | None
    since_ms: int = Field(description="The first failure of the current trouble.")
    updated_ms: int
    actions: list[str] = Field(description="The operator actions that fit now.")
    by_hand: bool = Field(description="An operator already resolved or skipped a step.")


class InboxReply(_Strict):
    items: list[InboxItem]
    counts: dict[str, int] = Field(description="Items by kind.")


# -- POST /api/bulk/{action} -------------------------------------------------------------------


class BulkFilter(_Strict):
    """The GET /api/sagas filters a bulk action can select by (every match, up to 200)."""

    status: list[SagaStatus] | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    health: list[Health] | None = None
    step: Annotated[str, Field(max_length=200)] | None = None
    saga_id_prefix: Annotated[str, Field(max_length=200)] | None = None
    input: dict[str, Annotated[str, Field(max_length=200)]] | None = Field(
        None, description="Top-level input fields and the values they must have."
    )


class BulkRequest(_Strict):
    """Which sagas (ids, or a filter), why, and whether only to preview."""

    saga_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=MAX_BULK
    )
    filter: BulkFilter | None = None
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    dry_run: bool = False
    actor: Annotated[str, Field(min_length=1, max_length=100)] | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> BulkRequest:
        if (self.saga_ids is None) == (self.filter is None):
            raise ValueError("give either saga_ids or filter")
        if not self.reason.strip():
            raise ValueError("a reason is required: say why, for the audit log")
        return self


class BulkItem(_Strict):
    saga_id: str
    outcome: Literal["ok", "refused", "not_found"]
    reason: str | None = Field(description="Why it was refused (None when ok).")
    status: SagaStatus | None = Field(description="Its status after the action (or preview).")
    compensations: list[str] = Field(description="Compensations the action runs, in order.")


class BulkReply(_Strict):
    action: Literal["retry", "resolve", "cancel"]
    dry_run: bool
    ok: int
    refused: int
    items: list[BulkItem]
