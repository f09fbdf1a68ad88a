"""Tracing: one trace per saga, coordinator and participant spans parented right, over the
in-memory transport and over a real nats-server; nothing at all without an SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import nats
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from saga import Coordinator, NatsTransport, SagaStatus, SqlSagaLog, tracing
from saga.protocol import Command, Direction
from saga.testing import FakeClock, Fault, InMemorySagaLog, InMemoryTransport
from saga.transport.nats_server import NatsServer
from tests.coordinator.shop import Shop, order_saga


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _by_name(spans: Sequence[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def check_one_trace(spans: Sequence[ReadableSpan], saga_id: str) -> dict[str, Any]:
    """Every span of the saga is in its derived trace, parented run -> attempt -> handler;
    returns the spans by kind for further checks."""
    trace_id, root_span_id = tracing.saga_trace_ids(saga_id)
    mine = [s for s in spans if _attrs(s).get("saga.id") == saga_id]
    assert mine, "no span for the saga"
    for span in mine:
        assert span.context is not None
        assert span.context.trace_id == trace_id, span.name
    runs = _by_name(mine, "saga ")
    assert len(runs) == 1
    run = runs[0]
    assert run.parent is not None
    assert run.parent.span_id == root_span_id
    assert run.context is not None
    attempts = _by_name(mine, "step ") + _by_name(mine, "compensate ")
    handlers = _by_name(mine, "handle ")
    by_id = {s.context.span_id: s for s in attempts if s.context is not None}
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.parent.span_id == run.context.span_id
    for handler in handlers:
        assert handler.parent is not None
        parent = by_id[handler.parent.span_id]  # a KeyError: a handler outside an attempt
        for key in ("saga.step", "saga.direction", "saga.attempt"):
            assert _attrs(handler)[key] == _attrs(parent)[key]
    return {"run": run, "attempts": attempts, "handlers": handlers}


async def test_a_compensated_saga_is_one_trace_in_memory(spans: InMemorySpanExporter) -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.reject.add("inventory.reserve")
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {"sku": "A"}), 10)
    assert result.status is SagaStatus.COMPENSATED
    found = check_one_trace(spans.get_finished_spans(), result.saga_id)
    assert _attrs(found["run"])["saga.outcome"] == "compensated"
    assert _attrs(found["run"])["saga.name"] == "order"
    steps = [
        (_attrs(s)["saga.step"], _attrs(s)["saga.direction"], _attrs(s)["saga.outcome"])
        for s in sorted(found["attempts"], key=lambda s: s.start_time or 0)
    ]
    assert steps == [
        ("create", "forward", "succeeded"),
        ("credit", "forward", "succeeded"),
        ("stock", "forward", "rejected"),
        ("credit", "compensate", "succeeded"),
        ("create", "compensate", "succeeded"),
    ]
    rejected = [s for s in found["attempts"] if _attrs(s)["saga.outcome"] == "rejected"]
    assert rejected[0].status.status_code is StatusCode.ERROR
    handled = sorted(
        (_attrs(s)["saga.step"], _attrs(s)["saga.direction"], _attrs(s)["saga.outcome"])
        for s in found["handlers"]
    )
    assert handled == sorted(steps)  # every attempt ran its handler here, once


async def test_a_saga_over_nats_is_one_trace(
    spans: InMemorySpanExporter, nats_server: NatsServer, sql_url: str
) -> None:
    shop, log = Shop(), SqlSagaLog(sql_url)
    shop.fail["payments.reserve"] = 1  # one failed attempt, then success: two attempt spans
    saga = order_saga()
    servers = [await p.serve(nats_server.url) for p in shop.participants]
    try:
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[saga]) as coord:
            result = await asyncio.wait_for(coord.execute(saga, {"sku": "A"}), 30)
    finally:
        for server in servers:
            await server.stop()
    assert result.status is SagaStatus.COMPLETED
    found = check_one_trace(spans.get_finished_spans(), result.saga_id)
    credit = sorted(
        (_attrs(s)["saga.attempt"], _attrs(s)["saga.outcome"])
        for s in found["attempts"]
        if _attrs(s)["saga.step"] == "credit"
    )
    assert credit == [(1, "failed"), (2, "succeeded")]
    # The participant's spans came over the wire: one per handler run, each under its attempt.
    assert len(found["handlers"]) == 4
    failed = [s for s in found["handlers"] if _attrs(s)["saga.outcome"] == "failed"]
    assert [_attrs(s)["saga.step"] for s in failed] == ["credit"]
    assert failed[0].status.status_code is StatusCode.ERROR


async def test_operator_action_is_a_span_in_the_saga_trace(spans: InMemorySpanExporter) -> None:
    shop, log, clock = Shop(), InMemorySagaLog(), FakeClock()
    saga = order_saga()
    transport = InMemoryTransport(
        shop.participants,
        intercept=lambda c: (
            Fault.LOSE_REPLY
            if (c.step, c.direction) == ("credit", Direction.FORWARD)
            else Fault.DELIVER
        ),
    )
    async with Coordinator(log, transport, sagas=[saga], clock=clock) as coord:
        handle = await coord.start(saga, {})
        await transport.settle()
        await coord.act(handle.saga_id, "cancel", actor="ana", reason="customer asked")
        result = await asyncio.wait_for(handle.result(), 10)
        with pytest.raises(Exception, match="already compensated"):
            await coord.act(handle.saga_id, "cancel", actor="bob", reason="again")
    assert result.status is SagaStatus.COMPENSATED
    finished = spans.get_finished_spans()
    found = check_one_trace(finished, handle.saga_id)
    trace_id, root_span_id = tracing.saga_trace_ids(handle.saga_id)
    actions = _by_name(finished, "operator ")
    assert [(_attrs(s)["saga.action"], _attrs(s)["saga.actor"]) for s in actions] == [
        ("cancel", "ana"),
        ("cancel", "bob"),
    ]
    for span in actions:
        assert span.context is not None
        assert span.context.trace_id == trace_id
        assert span.parent is not None
        assert span.parent.span_id == root_span_id
    assert [_attrs(s)["saga.dry_run"] for s in actions] == [False, False]
    assert actions[0].status.status_code is not StatusCode.ERROR
    assert actions[1].status.status_code is StatusCode.ERROR  # refused: the saga had ended
    # The credit attempt whose reply was lost ends with the saga, not never.
    lost = [s for s in found["attempts"] if _attrs(s)["saga.outcome"] == "abandoned"]
    assert [(_attrs(s)["saga.step"], _attrs(s)["saga.direction"]) for s in lost] == [
        ("credit", "forward")
    ]


async def test_a_restarted_coordinator_continues_the_same_trace(
    spans: InMemorySpanExporter,
) -> None:
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    lose_all = InMemoryTransport(shop.participants, intercept=lambda c: Fault.LOSE_REPLY)
    async with Coordinator(log, lose_all, sagas=[saga]) as first:
        handle = await first.start(saga, {})
        await lose_all.settle()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as second:
        result = await asyncio.wait_for(second.wait(handle.saga_id), 10)
    assert result.status is SagaStatus.COMPLETED
    finished = [s for s in spans.get_finished_spans() if _attrs(s).get("saga.id") == handle.saga_id]
    trace_id, root_span_id = tracing.saga_trace_ids(handle.saga_id)
    runs = _by_name(finished, "saga ")
    assert sorted(_attrs(s)["saga.outcome"] for s in runs) == ["completed", "handed_over"]
    for span in finished:
        assert span.context is not None
        assert span.context.trace_id == trace_id
    for run in runs:
        assert run.parent is not None
        assert run.parent.span_id == root_span_id


async def _headers_on_the_wire(url: str) -> dict[str, str]:
    """Send one command through NatsTransport (as the coordinator does, inside
    ``sending``) and return the headers a raw subscriber received."""
    client = await nats.connect(url)
    got: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Any) -> None:
        if not got.done():
            got.set_result(dict(msg.headers or {}))

    await client.subscribe("orders.create", cb=on_msg)
    await client.flush()
    transport = NatsTransport(url)

    async def on_reply(command: Command, reply: Any) -> None:
        return None

    await transport.open(on_reply)
    open_spans = tracing.CoordinatorTracing()
    command = Command(
        saga_id="order-1", saga_name="order", step="create", direction=Direction.FORWARD,
        attempt=1, service="orders", command="create",
    )  # fmt: skip
    try:
        with open_spans.sending("order-1", "order", "create", "forward", 1):
            await transport.send(command)
        return await asyncio.wait_for(got, 10)
    finally:
        open_spans.close()
        await transport.close()
        await client.close()


async def test_commands_carry_a_w3c_traceparent_only_when_tracing(
    spans: InMemorySpanExporter, nats_server: NatsServer
) -> None:
    headers = await _headers_on_the_wire(nats_server.url)
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert int(trace_id, 16) == tracing.saga_trace_ids("order-1")[0]
    attempt = _by_name(spans.get_finished_spans(), "step create")
    assert attempt[0].context is not None
    assert int(span_id, 16) == attempt[0].context.span_id


async def test_without_an_sdk_no_span_and_no_traceparent(nats_server: NatsServer) -> None:
    assert not tracing.enabled()
    headers = await _headers_on_the_wire(nats_server.url)
    assert "traceparent" not in headers
    assert headers["Saga-Id"] == "order-1"
    with tracing.operator_span("order-1", "cancel", "ana"):
        carrier: dict[str, str] = {}
        tracing.inject(carrier)
    assert carrier == {}
