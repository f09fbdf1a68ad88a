"""OpenTelemetry tracing for sagas: the only module that imports ``opentelemetry``.

Off unless an OpenTelemetry SDK ``TracerProvider`` is installed (``trace.set_tracer_provider``,
or ``opentelemetry-instrument``): with the API's default provider every function here returns
at once and no span is made.

One saga is one trace, whose id is derived from the saga id, so that a coordinator that
restarts (or takes the saga over) continues the same trace:

- ``saga <name>``: one span per run of a saga in one coordinator (from its first command
  sent there until it settles or is let go); its parent is the saga's virtual root span
  (a span id derived from the saga id too, never exported itself);
- ``step <step>`` / ``compensate <step>``: one per attempt, from its send to its reply (or
  timeout), child of the run span; the command carries its context in the W3C
  ``traceparent`` header;
- ``handle <service>.<command>``: the participant's handler, child of the attempt span;
- ``operator <action>``: an operator action, child of the virtual root.

Attributes: ``saga.id``, ``saga.name``, ``saga.step``, ``saga.direction``, ``saga.attempt``,
``saga.outcome`` (and ``saga.action``, ``saga.actor``, ``saga.dry_run`` for operator actions).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from saga.version import __version__

TRACER_NAME = "saga"

AttemptKey = tuple[str, str, str, int]
"""(saga id, step, direction, attempt)."""

_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()
"""What every wrapper returns while tracing is off (reusable, stateless)."""
_FAILED_OUTCOMES = frozenset({"failed", "rejected", "timeout", "error"})


_UNKNOWN = object()
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def enabled() -> bool:
    """Whether an OpenTelemetry SDK (any real ``TracerProvider``) is installed."""
    # Called for every command: ``trace.get_tracer_provider()`` looks the environment up
    # each time no provider is set (microseconds), so the global is read first (with the
    # public call as the fallback should the API ever rename it).
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None and not _PROVIDER_FROM_ENV:
        return False
    if provider is None or provider is _UNKNOWN:
        provider = trace.get_tracer_provider()
    return not isinstance(provider, (ProxyTracerProvider, NoOpTracerProvider))


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, __version__)


def saga_trace_ids(saga_id: str) -> tuple[int, int]:
    """The trace id and virtual root span id of a saga: the same in every process."""
    digest = hashlib.sha256(b"saga-trace\0" + saga_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def _root_context(saga_id: str) -> otel_context.Context:
    trace_id, span_id = saga_trace_ids(saga_id)
    root = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(root))


def _end(span: Span, outcome: str) -> None:
    span.set_attribute("saga.outcome", outcome)
    if outcome in _FAILED_OUTCOMES:
        span.set_status(Status(StatusCode.ERROR, outcome))
    span.end()


@dataclass
class CoordinatorTracing:
    """The spans one coordinator has open: a run span per saga, a span per attempt sent."""

    _runs: dict[str, Span] = field(default_factory=dict)
    _attempts: dict[AttemptKey, Span] = field(default_factory=dict)

    def sending(
        self, saga_id: str, saga_name: str, step: str, direction: str, attempt: int
    ) -> AbstractContextManager[None]:
        """Around handing one attempt to the transport: its span is current (so the
        transport injects its context into the command's headers). A re-send of the same
        attempt reuses its span."""
        if not enabled():
            return _NOTHING
        return self._sending(saga_id, saga_name, step, direction, attempt)

    @contextlib.contextmanager
    def _sending(
        self, saga_id: str, saga_name: str, step: str, direction: str, attempt: int
    ) -> Iterator[None]:
        key = (saga_id, step, direction, attempt)
        span = self._attempts.get(key)
        if span is None:
            run = self._runs.get(saga_id)
            if run is None:
                run = self._runs[saga_id] = _tracer().start_span(
                    f"saga {saga_name}",
                    context=_root_context(saga_id),
                    kind=SpanKind.INTERNAL,
                    attributes={"saga.id": saga_id, "saga.name": saga_name},
                )
            verb = "step" if direction == "forward" else "compensate"
            span = self._attempts[key] = _tracer().start_span(
                f"{verb} {step}",
                context=trace.set_span_in_context(run),
                kind=SpanKind.PRODUCER,
                attributes={
                    "saga.id": saga_id,
                    "saga.name": saga_name,
                    "saga.step": step,
                    "saga.direction": direction,
                    "saga.attempt": attempt,
                },
            )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def answered(self, key: AttemptKey, outcome: str) -> None:
        """The attempt ``key`` was answered (``outcome``: succeeded, rejected, failed,
        accepted) or timed out (``timeout``): its span ends."""
        if self._attempts:
            span = self._attempts.pop(key, None)
            if span is not None:
                _end(span, outcome)

    def settled(self, saga_id: str, outcome: str) -> None:
        """The saga settled here (completed, compensated, stuck) or was let go
        (``handed_over``): its run span and any attempt still open end."""
        if not self._runs and not self._attempts:
            return
        for key in [k for k in self._attempts if k[0] == saga_id]:
            _end(self._attempts.pop(key), "abandoned")
        run = self._runs.pop(saga_id, None)
        if run is not None:
            _end(run, outcome)

    def close(self) -> None:
        """The coordinator stops: every open span ends (its sagas continue elsewhere)."""
        for span in self._attempts.values():
            _end(span, "abandoned")
        for span in self._runs.values():
            _end(span, "handed_over")
        self._attempts.clear()
        self._runs.clear()


def operator_span(
    saga_id: str, action: str, actor: str, *, dry_run: bool = False
) -> AbstractContextManager[None]:
    """Around an operator action: a span in the saga's trace; an exception marks it."""
    return _operator_span(saga_id, action, actor, dry_run) if enabled() else _NOTHING


@contextlib.contextmanager
def _operator_span(saga_id: str, action: str, actor: str, dry_run: bool) -> Iterator[None]:
    with _tracer().start_as_current_span(
        f"operator {action}",
        context=_root_context(saga_id),
        kind=SpanKind.INTERNAL,
        attributes={
            "saga.id": saga_id,
            "saga.action": action,
            "saga.actor": actor,
            "saga.dry_run": dry_run,
        },
    ):
        yield


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's context (``traceparent``) to outgoing headers, if tracing."""
    if enabled():
        propagate.inject(headers)


def extracted(headers: Mapping[str, str] | None) -> AbstractContextManager[None]:
    """Around serving a received message: the context its headers carry is current."""
    return _extracted(headers) if headers and enabled() else _NOTHING


@contextlib.contextmanager
def _extracted(headers: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


@dataclass
class HandlerSpan:
    """What a handler's span records when it ends."""

    outcome: str = "succeeded"


def handler_span(
    service: str, command: str, *, saga_id: str, saga_name: str, step: str, direction: str,
    attempt: int,
) -> AbstractContextManager[HandlerSpan]:  # fmt: skip
    """Around a participant's handler: a span, child of the current context (the attempt
    span that sent the command); set ``outcome`` on what it yields."""
    if not enabled():
        return contextlib.nullcontext(HandlerSpan())
    attributes: dict[str, str | int] = {
        "saga.id": saga_id,
        "saga.name": saga_name,
        "saga.step": step,
        "saga.direction": direction,
        "saga.attempt": attempt,
    }
    return _handler_span(f"handle {service}.{command}", attributes)


@contextlib.contextmanager
def _handler_span(name: str, attributes: dict[str, str | int]) -> Iterator[HandlerSpan]:
    record = HandlerSpan()
    with _tracer().start_as_current_span(
        name,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        try:
            yield record
        finally:
            span.set_attribute("saga.outcome", record.outcome)
            if record.outcome in _FAILED_OUTCOMES:
                span.set_status(Status(StatusCode.ERROR, record.outcome))
