"""Requests and answers of the operator overview routes (stats, inbox, bulk actions), as
pydantic models on ``saga.api.models``' bases: ``params`` validates with them and
``saga.api.openapi_ops`` documents them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from saga.api.models import (
    SAGA_ID_PATTERN,
    Actor,
    Answer,
    Query,
    Reason,
    Request,
    SagaId,
    not_null,
)
from saga.events import Health, SagaStatus
from saga.log.base import INPUT_FIELD, INPUT_FIELD_RULE, MAX_INPUT_FILTERS, MAX_INPUT_VALUE

MAX_BULK = 200
"""The most sagas one bulk action takes."""

# A JSON string names an enum member (the bodies are strict otherwise).
_Statuses = list[Annotated[SagaStatus, Strict(False)]] | None
_Healths = list[Annotated[Health, Strict(False)]] | None


# -- GET /api/stats ----------------------------------------------------------------------------


class StatsQuery(Query):
    """The query string of GET /api/stats."""

    minutes: int = Field(60, ge=1, le=1440, description="The window: the last N minutes.")


class Window(Answer):
    since_ms: int = Field(description="The window's first millisecond (a minute boundary).")
    until_ms: int = Field(description="The first millisecond after it (the next minute).")
    minutes: int


class MinuteOut(Answer):
    start_ms: int = Field(description="The minute's first millisecond.")
    started: int
    completed: int
    compensated: int
    stuck: int = Field(description="Sagas that became stuck in the minute.")


class NameOut(Answer):
    name: str
    completed: int = Field(description="Finished completed in the window.")
    compensated: int = Field(description="Finished compensated in the window.")
    compensation_rate: float = Field(description="compensated / finished, 0 to 1.")
    p50_ms: int = Field(description="Median duration of the sagas finished in the window.")
    p99_ms: int = Field(description="99th percentile duration (nearest rank).")


class FailingStepOut(Answer):
    name: str = Field(description="The saga name.")
    step: str
    direction: Literal["forward", "compensate"]
    failures: int = Field(description="Failed attempts in the window.")


class StatsReply(Answer):
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


class InboxQuery(Query):
    """The query string of GET /api/inbox."""

    name: str | None = Field(None, max_length=200, description="Only sagas of this name.")
    limit: int = Field(100, ge=1, le=200, description="The most items of each kind.")


class InboxItem(Answer):
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


class InboxReply(Answer):
    items: list[InboxItem]
    counts: dict[str, int] = Field(description="Items by kind.")


# -- POST /api/bulk/{action} -------------------------------------------------------------------


_InputField = Annotated[str, Field(pattern=rf"^{INPUT_FIELD.pattern}$")]
_InputValue = Annotated[str, Field(max_length=MAX_INPUT_VALUE)]
_Text = Annotated[str, Field(max_length=200)]


class BulkFilter(Request):
    """The GET /api/sagas filters a bulk action can select by (every match, up to 200)."""

    status: _Statuses = None
    name: _Text | None = None
    health: _Healths = None
    step: _Text | None = None
    saga_id_prefix: Annotated[SagaId | None, Field(description="Ids that start with this.")] = None
    input: Annotated[
        dict[_InputField, _InputValue] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {
                        "type": "object",
                        "maxProperties": MAX_INPUT_FILTERS,
                        "propertyNames": {"pattern": rf"^{INPUT_FIELD.pattern}$"},
                        "additionalProperties": {"type": "string", "maxLength": MAX_INPUT_VALUE},
                    },
                    {"type": "null"},
                ]
            }
        ),
        Field(
            max_length=MAX_INPUT_FILTERS,
            description="Top-level input fields and the values they must have"
            f" ({INPUT_FIELD_RULE}; up to {MAX_INPUT_FILTERS}).",
        ),
    ] = None


class BulkRequest(Request):
    """Which sagas (``saga_ids``, or a ``filter``: exactly one), why, and whether only to
    preview."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["saga_ids"]}, {"required": ["filter"]}]}
    )
    saga_ids: Annotated[
        list[SagaId] | None,
        BeforeValidator(not_null),
        WithJsonSchema(
            {
                "type": "array",
                "items": {"type": "string", "pattern": SAGA_ID_PATTERN},
                "minItems": 1,
                "maxItems": MAX_BULK,
            }
        ),
        Field(min_length=1, max_length=MAX_BULK, description="The sagas, by id."),
    ] = None
    filter: Annotated[
        BulkFilter | SkipJsonSchema[None],
        BeforeValidator(not_null),
        Field(description="Every saga the filter matches (at most 200)."),
    ] = None
    reason: Reason
    dry_run: Annotated[bool, Field(description="Answer what would happen, change nothing.")] = False
    actor: Actor = None

    @model_validator(mode="after")
    def _one_selection(self) -> BulkRequest:
        if (self.saga_ids is None) == (self.filter is None):
            raise ValueError("give either saga_ids or filter")
        return self


BulkAction = Literal["retry", "resolve", "cancel"]


class BulkPath(Query):
    action: Annotated[BulkAction, Field(description="The operator action to take on each saga.")]


class BulkItem(Answer):
    saga_id: str
    outcome: Literal["ok", "refused", "not_found"]
    reason: str | None = Field(description="Why it was refused (None when ok).")
    status: SagaStatus | None = Field(description="Its status after the action (or preview).")
    compensations: list[str] = Field(description="Compensations the action runs, in order.")


class BulkReply(Answer):
    action: BulkAction
    dry_run: bool
    ok: int
    refused: int
    items: list[BulkItem]
