"""The API's contract, once: every query string, path, JSON body and JSON answer as a pydantic
model. ``params`` validates requests with them; ``openapi`` derives /openapi.json from them.

Request models are strict (a JSON ``"1"`` is not an integer) and forbid unknown fields; a
field that may be left out may not be sent as ``null`` either. Query models read strings
(``params.query`` turns ``?a=x&a=y,z`` into a list for a field marked ``LIST``). Answer models
describe what the views build; schemathesis checks the answers against them in CI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from saga.definition import StepKind
from saga.engine import Action
from saga.events import Health, SagaStatus
from saga.log.paging import MAX_PAGE_SIZE
from saga.names import NAME_MAX, NAME_RULE, SAGA_ID_MAX, SAGA_ID_RULE, is_name, is_saga_id
from saga.protocol import Direction

MAX_REASON = 2000
"""The longest reason an operator action takes."""
MAX_TIME_MS = 2**62
"""Epoch milliseconds beyond this (either sign) are out of range."""
SAGA_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.:@-]{{0,{SAGA_ID_MAX - 1}}}$"
NAME_PATTERN = rf"^[A-Za-z0-9_-]{{1,{NAME_MAX}}}$"
FLAGS = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}  # fmt: skip
"""The spellings of a yes/no query flag."""

LIST = "list"
"""Marks a query field that takes ``?k=a&k=b`` and ``?k=a,b`` (Annotated metadata)."""


def not_null(value: object) -> object:
    # A field that may be left out may not be sent as null: one way to say "absent".
    if value is None:
        raise ValueError("must not be null; leave the field out instead")
    return value


def _saga_id(value: str) -> str:
    if not is_saga_id(value):
        raise ValueError(f"{value[:60]!r} is invalid: it must be {SAGA_ID_RULE}")
    return value


def _name(value: str) -> str:
    if not is_name(value):
        raise ValueError(f"{value[:60]!r} is invalid: it must be {NAME_RULE}")
    return value


def _reason(value: str) -> str:
    if not value.strip():
        raise ValueError("a reason is required: say why, for the audit log")
    return value


def _time_ms(value: object) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it names a zone)."""
    if not isinstance(value, str):
        raise ValueError("must be epoch milliseconds or an ISO 8601 time")
    text = value.strip()
    if text.lstrip("-").isdigit():
        number = int(text)
        if abs(number) > MAX_TIME_MS:
            raise ValueError("is out of range")
        return number
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError("must be epoch milliseconds or an ISO 8601 time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return int(when.timestamp() * 1000)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError("is out of range") from exc


def _json_integer(value: object) -> object:
    # Strict mode refuses 1.0, which JSON Schema counts as an integer; a string or a boolean
    # is no integer in either.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _flag(value: object) -> bool:
    if isinstance(value, str) and value in FLAGS:
        return FLAGS[value]
    raise ValueError("must be 1 or 0 (true or false)")


SagaId = Annotated[str, AfterValidator(_saga_id), WithJsonSchema(
    {"type": "string", "pattern": SAGA_ID_PATTERN, "description": f"A saga id: {SAGA_ID_RULE}."}
)]  # fmt: skip
Name = Annotated[str, AfterValidator(_name), WithJsonSchema(
    {"type": "string", "pattern": NAME_PATTERN, "description": f"A name: {NAME_RULE}."}
)]  # fmt: skip
NameFilter = Annotated[str, AfterValidator(_name), WithJsonSchema(
    {"type": "string", "pattern": rf"^[A-Za-z0-9_-]{{0,{NAME_MAX}}}$",
     "description": f"A name: {NAME_RULE}; empty: no filter."}
)]  # fmt: skip
TimeMs = Annotated[int, BeforeValidator(_time_ms), WithJsonSchema(
    {
        "anyOf": [
            {"type": "integer", "minimum": -MAX_TIME_MS, "maximum": MAX_TIME_MS},
            {"type": "string", "format": "date-time"},
        ],
        "description": "Epoch milliseconds, or an ISO 8601 time (UTC unless it names a zone).",
    }
)]  # fmt: skip
Flag = Annotated[bool, BeforeValidator(_flag), WithJsonSchema(
    {"type": "string", "enum": list(FLAGS)}
)]  # fmt: skip
JsonObject = dict[str, Any]
MaybeStr = str | None
MaybeInt = int | None


class Request(BaseModel):
    """A JSON body: strict types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    BAD_REQUEST_FIELDS: ClassVar[frozenset[str]] = frozenset()
    """Fields whose bad value is a 400 (it would be part of a URL), not a 422."""


class Query(BaseModel):
    """A query string: strings in, typed values out; parameters it does not name are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# -- requests -----------------------------------------------------------------------------


class Page(Query):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="Page size (50).")] = 50
    cursor: Annotated[
        str | None, Field(max_length=2000, description="next_cursor from the previous page.")
    ] = None


class SagaListQuery(Page):
    """GET /api/sagas."""

    status: Annotated[
        list[SagaStatus] | None, LIST, Field(description="Statuses (repeat or comma-separate).")
    ] = None
    name: Annotated[str | None, Field(max_length=200, description="Saga definition name.")] = None
    health: Annotated[
        list[Health] | None, LIST, Field(description="Health (stuck includes stalled sagas).")
    ] = None
    step: Annotated[str | None, Field(max_length=200, description="Current step.")] = None
    waiting_for: Annotated[
        NameFilter | None, Field(description="The outside event the saga waits for.")
    ] = None
    created_after: Annotated[TimeMs | None, Field(description="Created at or after.")] = None
    created_before: Annotated[TimeMs | None, Field(description="Created before.")] = None
    updated_after: Annotated[TimeMs | None, Field(description="Updated at or after.")] = None
    updated_before: Annotated[TimeMs | None, Field(description="Updated before.")] = None
    saga_id: Annotated[SagaId | None, Field(description="The saga with exactly this id.")] = None
    saga_id_prefix: Annotated[
        SagaId | None,
        Field(
            description="Sagas whose id starts with this. Beside it, input.<field>=<value>"
            " (up to four) finds sagas whose input has that top-level field as that string"
            " or integer (a field name that is not letters, digits and '_' is a 400).",
        ),
    ] = None


class CompensationsQuery(Page):
    """GET /api/compensations."""

    name: Annotated[str | None, Field(max_length=200, description="Saga name.")] = None


class EventsQuery(Query):
    """GET /api/events."""

    saga_id: Annotated[
        str | None, Field(max_length=200, description="Only this saga's changes.")
    ] = None


class ActionQuery(Query):
    """POST /api/sagas/{saga}/actions/{action}."""

    dry_run: Annotated[Flag, Field(description="Answer what would happen, change nothing.")] = False


class SagaPath(Query):
    saga: Annotated[SagaId, Field(description="A saga id.")]


class DefinitionPath(Query):
    name: Annotated[Name, Field(description="A saga definition's name.")]


class OldStartPath(Query):
    saga: Annotated[Name, Field(description="A saga definition's name (deprecated path).")]


class EventPath(Query):
    saga: Annotated[SagaId, Field(description="A saga id.")]
    event: Annotated[Name, Field(description="The event's name, as the saga's Wait step names it.")]


class AssetPath(Query):
    name: Annotated[str, Field(min_length=1, description="File name.")]


class StartRequest(Request):
    """Start a saga: its input, and optionally its id (idempotent) and definition version."""

    BAD_REQUEST_FIELDS: ClassVar[frozenset[str]] = frozenset({"saga_id"})
    input: Annotated[
        JsonObject, BeforeValidator(not_null), Field(description="The saga's input ({}).")
    ] = Field(default_factory=dict)
    saga_id: Annotated[
        SagaId | None,
        BeforeValidator(not_null),
        WithJsonSchema({"type": "string", "pattern": SAGA_ID_PATTERN}),
        Field(description=f"Your id for it ({SAGA_ID_RULE}): a repeat starts nothing."),
    ] = None
    version: Annotated[
        int | None,
        BeforeValidator(_json_integer),
        BeforeValidator(not_null),
        WithJsonSchema({"type": "integer", "minimum": 1}),
        Field(description="The definition version (the newest registered)."),
    ] = None

    @model_validator(mode="after")
    def _version_positive(self) -> StartRequest:
        if self.version is not None and self.version < 1:
            raise ValueError("version must be 1 or more")
        return self


Reason = Annotated[
    str,
    Field(min_length=1, max_length=MAX_REASON, pattern=r"\S", description="Why, for the audit."),
    AfterValidator(_reason),
]
Actor = Annotated[
    str | None,
    BeforeValidator(not_null),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 100}),
    Field(min_length=1, max_length=100, description="Who asks (the token's name is added)."),
]


class ActionRequest(Request):
    """An operator action's body: why, and who asks."""

    reason: Reason
    actor: Actor = None

    @model_validator(mode="before")
    @classmethod
    def _result_is_for_skip(cls, value: Any) -> Any:
        if isinstance(value, dict) and "result" in value:
            raise ValueError("result is only for skip, and must be a JSON object")
        return value


class SkipRequest(Request):
    """skip's body: why, who asks, and the result to record for the skipped step."""

    reason: Reason
    actor: Actor = None
    result: Annotated[
        JsonObject | None,
        BeforeValidator(not_null),
        WithJsonSchema({"type": "object"}),
        Field(description="The result to record for the step ({})."),
    ] = None


ACTION_BODIES: dict[Action, type[ActionRequest] | type[SkipRequest]] = {
    action: SkipRequest if action is Action.SKIP else ActionRequest for action in Action
}
"""Each action's body model."""


class EventRequest(Request):
    """An outside event for a saga's wait step."""

    id: Annotated[
        SagaId,
        Field(
            description="The sender's id for this event (the saga id grammar): a repeat"
            " of an id is the same event, answered 200 with nothing changed."
        ),
    ]
    payload: Annotated[
        JsonObject,
        BeforeValidator(not_null),
        Field(description="The event's data ({} when absent): the wait step's result."),
    ] = Field(default_factory=dict)


# -- answers ----------------------------------------------------------------------------


class Answer(BaseModel):
    """A JSON answer (documentation: the views build the dicts)."""

    model_config = ConfigDict(frozen=True)


class ErrorDetail(Answer):
    status: int
    code: str
    message: str


class Problem(Answer):
    """Every error: ``{"error": {"status", "code", "message"}}``."""

    error: ErrorDetail


class SagaRow(Answer):
    saga_id: str
    name: str
    version: int
    status: SagaStatus
    current_step: MaybeStr
    attempt: MaybeInt
    waiting_for: Annotated[
        MaybeStr, Field(description="The outside event the saga waits for now (a Wait step).")
    ]
    due_ms: Annotated[
        MaybeInt,
        Field(description="The earliest deadline of its accepted long-running steps and waits."),
    ]
    created_ms: int
    updated_ms: int
    owner: Annotated[
        MaybeStr,
        Field(
            description="The coordinator id that owns the saga (drives it, or drove it last);"
            " null: none (handed back, or never claimed)."
        ),
    ]
    epoch: Annotated[
        int, Field(description="How many times the saga was claimed; its owner's writes carry it.")
    ]


class SagaSummary(SagaRow):
    """One row of the saga list."""

    health: Health | None
    by_hand: Annotated[
        bool,
        Field(description="An operator resolved, skipped or forced forward one of its steps."),
    ]


class SagaList(Answer):
    sagas: list[SagaSummary]
    next_cursor: MaybeStr


class DefinitionStep(Answer):
    name: str
    kind: Literal[StepKind.COMPENSATABLE, StepKind.PIVOT, StepKind.RETRIABLE, "wait"]
    after: Annotated[list[str], Field(description="Steps that must succeed first (resolved).")]
    depth: Annotated[int, Field(description="Longest chain of steps before it.")]
    service: Annotated[MaybeStr, Field(description="null for a wait.")]
    command: MaybeStr
    compensation: MaybeStr
    event: Annotated[MaybeStr, Field(description="A wait: the outside event it waits for.")]
    timeout_ms: int
    long_running: bool
    completion_timeout_ms: MaybeInt
    poll_every_ms: MaybeInt


class Definition(Answer):
    name: str
    version: int
    sequence: Annotated[bool, Field(description="No branches: each step follows the one before.")]
    events: Annotated[list[str], Field(description="Outside events its waits take.")]
    steps: list[DefinitionStep]


class Definitions(Answer):
    sagas: list[Definition]


EntryState = Literal[
    "pending", "in_flight", "accepted", "awaiting", "succeeded", "rejected", "failed",
    "waiting", "stuck", "done_by_hand",
]  # fmt: skip


class TimelineEntry(Answer):
    step: str
    direction: Direction
    state: EntryState
    kind: MaybeStr
    service: MaybeStr
    command: MaybeStr
    event: MaybeStr
    signal: Annotated[MaybeStr, Field(description="A wait that succeeded: the event id.")]
    after: list[str]
    lane: Annotated[MaybeInt, Field(description="Its row; null while pending.")]
    started_ms: MaybeInt
    ended_ms: MaybeInt
    attempts: list[JsonObject]
    by_hand: JsonObject | None
    stuck: bool


class Signal(Answer):
    event: str
    id: str
    sender: str
    at_ms: int
    step: Annotated[MaybeStr, Field(description="null: kept for a step not reached yet.")]
    payload: JsonObject


class Timeline(Answer):
    steps: list[TimelineEntry]
    compensations: list[TimelineEntry]
    operator_actions: list[JsonObject]
    marks: list[JsonObject]
    signals: list[JsonObject]


class ActiveStep(Answer):
    step: str
    direction: Direction
    phase: str
    attempt: int
    service: MaybeStr
    command: MaybeStr
    deadline_ms: MaybeInt
    heartbeats: int
    waiting_for: MaybeStr
    timeout_at_ms: MaybeInt
    retry_at_ms: MaybeInt
    last_error: Any


class Allowed(Answer):
    allowed: bool
    reason: MaybeStr


class SagaDetail(SagaRow):
    """One saga: its row, input, results, health with its why, timeline and actions."""

    input: JsonObject
    health: Annotated[
        JsonObject | None,
        Field(description="state, step, direction, attempt, retry_at_ms, last_error, reason"),
    ]
    results: JsonObject
    compensation: JsonObject | None
    stuck: JsonObject | None
    active: list[ActiveStep]
    signals: list[Signal]
    timeline: Timeline
    actions: dict[str, Allowed]
    definition: Definition | None


class Started(Answer):
    saga_id: str
    created: Annotated[bool, Field(description="false: a saga with that id existed.")]
    name: str
    version: int
    status: SagaStatus


class EventTaken(Answer):
    saga_id: str
    event: str
    id: str
    recorded: Annotated[bool, Field(description="false: a repeat of an id the saga had received.")]
    step: Annotated[
        MaybeStr, Field(description="The wait step the event completed; null: kept for later.")
    ]
    status: SagaStatus


class PreviewCommand(Answer):
    step: str
    direction: Direction
    service: str
    command: str
    attempt: int


class PreviewEvent(Answer):
    type: str
    at_ms: int
    data: JsonObject


class Preview(Answer):
    saga_id: str
    action: Action
    dry_run: bool
    status: SagaStatus
    health: Health | None
    compensations: list[str]
    commands: list[PreviewCommand]
    events: list[PreviewEvent]


class CompensationItem(SagaSummary):
    category: Literal["stuck", "failing", "compensating"]
    step: MaybeStr
    direction: MaybeStr
    attempts: MaybeInt
    last_error: Any
    reason: MaybeStr
    compensation_reason: MaybeStr
    compensated: list[str]
    remaining: list[str]
    since_ms: int


class Compensations(Answer):
    compensations: list[CompensationItem]
    next_cursor: MaybeStr


class ServiceLoad(Answer):
    service: str
    queued: Annotated[int, Field(description="Commands waiting for a slot, not sent yet.")]
    in_flight: Annotated[int, Field(description="Commands sent and not answered yet.")]
    limit: Annotated[MaybeInt, Field(description="The in-flight limit; null: unbounded.")]


class Services(Answer):
    services: list[ServiceLoad]


class Coordinator(Answer):
    """One coordinator sharing the log, as it reported at its last lease renewal."""

    coordinator_id: Annotated[str, Field(description="Unique per start.")]
    name: str
    api_url: MaybeStr
    started_ms: int
    renewed_ms: int
    lease_until_ms: int
    stopped_ms: MaybeInt
    state: Literal["live", "stopped", "expired"]
    sagas: int
    in_flight: int
    fenced_writes: int
    self: bool


class Coordinators(Answer):
    this: Annotated[str, Field(description="The id of the coordinator answering.")]
    lease_ms: int
    now_ms: Annotated[int, Field(description="The database's clock.")]
    coordinators: list[Coordinator]


class Me(Answer):
    name: str
    role: str
    auth: bool


class Status(Answer):
    status: str


class Readiness(Answer):
    status: Literal["ready", "not_ready"]
    checks: dict[str, JsonObject]


# -- operations -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One documented answer of an operation."""

    description: str
    """What the answer means."""
    model: type[BaseModel] | None = None
    """Its JSON body's model; None with ``media``: a body of that type, described by ``schema``."""
    media: str | None = None
    """A body that is not JSON (text/plain, text/html, text/event-stream)."""
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    """The schema of a non-JSON body."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Response headers it carries: name to description (string values)."""
    links: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """OpenAPI links: operations that take a value of this answer (e.g. the new saga's id)."""


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One route as /openapi.json shows it: its models, answers and errors.

    A new route joins the document with one ``Operation`` in a list that ``saga.api.openapi``
    reads (its ``OPERATIONS``); its handler validates with the same models (``params``).
    """

    method: str
    """HTTP method, upper case."""
    path: str
    """The path as routed, with ``{name}`` placeholders."""
    summary: str
    """One line for the document."""
    tag: str
    """Its group in the document (a name in ``saga.api.openapi.TAGS``)."""
    replies: Mapping[int, Reply]
    """The answers that are not errors, by status."""
    errors: Mapping[int, str] = field(default_factory=dict)
    """Its problem answers, by status, with what each means here (auth, 421 are added)."""
    path_model: type[Query] | None = None
    """The path's placeholders."""
    query: type[Query] | None = None
    """Its query string."""
    body: type[Request] | None = None
    """Its JSON body."""
    body_required: bool = False
    """The body may not be left out."""
    public: bool = False
    """No token needed."""
    write: bool = False
    """It changes something: a cross-site browser request is a 403, a non-JSON body a 415."""
    deprecated: bool = False
    """Kept for old callers; the description says what replaces it."""
    description: str | None = None
    """More than the summary, when needed."""
