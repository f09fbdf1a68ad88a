"""Logs: JSON lines with the saga's fields, the HTTP access log in both formats (never a
token), operator actions on saga.audit, and --log-format on the commands that run a
coordinator."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import click
import pytest
from click.testing import CliRunner

from saga import Coordinator, SagaStatus
from saga.api import ApiConfig, start_http
from saga.cli import main
from saga.dev import dev
from saga.log_options import configure_logging, log_file_handler, log_format_option
from saga.logging_setup import SagaContextFilter, current, make_handler, saga_context
from saga.protocol import Direction
from saga.testing import FakeClock, Fault, InMemorySagaLog, InMemoryTransport
from tests.coordinator.shop import Shop, order_saga, pivot_saga

SECRET = "operator-secret-77"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything logged under ``saga`` as JSON lines, in a buffer."""
    buffer = io.StringIO()
    handler = make_handler("json", buffer)
    logger = logging.getLogger("saga")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(level)


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_saga_context_is_set_inside_and_gone_after() -> None:
    assert current() == {}
    with saga_context("order-1", "credit", "forward", 2):
        assert current() == {
            "saga_id": "order-1", "step": "credit", "direction": "forward", "attempt": 2,
        }  # fmt: skip
        with saga_context("order-2"):
            assert current() == {"saga_id": "order-2"}
        assert current()["saga_id"] == "order-1"
    assert current() == {}


def test_json_lines_have_the_standard_fields_and_the_saga_fields() -> None:
    buffer = io.StringIO()
    logger = logging.getLogger("saga.test.json")
    logger.addHandler(make_handler("json", buffer))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("outside %s", "any saga")
        with saga_context("order-1", "credit", "compensate", 3):
            logger.warning("inside")
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    outside, inside, failed = parsed(buffer)
    assert set(outside) == {"time", "level", "logger", "message"}
    assert outside["message"] == "outside any saga"
    assert outside["level"] == "INFO"
    assert outside["logger"] == "saga.test.json"
    assert outside["time"].endswith("+00:00")
    assert inside["saga_id"] == "order-1"
    assert (inside["step"], inside["direction"], inside["attempt"]) == ("credit", "compensate", 3)
    assert inside["level"] == "WARNING"
    assert "ValueError: boom" in failed["exc_info"]
    assert failed["saga_id"] == "order-1"


def test_text_lines_name_the_saga_only_inside_one() -> None:
    record = logging.LogRecord("saga.x", logging.INFO, "", 0, "hello", None, None)
    handler = make_handler("text", io.StringIO())
    SagaContextFilter().filter(record)
    assert handler.format(record).endswith("saga.x: hello")
    record = logging.LogRecord("saga.x", logging.INFO, "", 0, "hello", None, None)
    with saga_context("order-1", "credit", "forward", 1):
        SagaContextFilter().filter(record)
    assert handler.format(record).endswith(
        "hello [saga_id=order-1 step=credit direction=forward attempt=1]"
    )


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        make_handler("xml")


async def test_lines_logged_while_a_step_runs_carry_its_fields(json_lines: io.StringIO) -> None:
    shop, log = Shop(), InMemorySagaLog()
    shop.fail["payments.reserve"] = 1  # the handler raises once: logged, then retried
    saga = order_saga()
    async with Coordinator(log, InMemoryTransport(shop.participants), sagas=[saga]) as coord:
        result = await asyncio.wait_for(coord.execute(saga, {}), 10)
    assert result.status is SagaStatus.COMPLETED
    raised = [line for line in parsed(json_lines) if "raised" in line["message"]]
    assert len(raised) == 1
    line = raised[0]
    assert line["saga_id"] == result.saga_id
    assert (line["step"], line["direction"], line["attempt"]) == ("credit", "forward", 1)
    assert line["level"] == "ERROR"
    assert "payments.reserve is down" in line["exc_info"]


async def test_operator_actions_are_written_to_saga_audit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="saga.audit")
    shop, log = Shop(), InMemorySagaLog()
    saga = order_saga()
    transport = InMemoryTransport(
        shop.participants,
        intercept=lambda c: (
            Fault.LOSE_REPLY
            if (c.step, c.direction) == ("credit", Direction.FORWARD)
            else Fault.DELIVER
        ),
    )
    async with Coordinator(log, transport, sagas=[saga], clock=FakeClock()) as coord:
        handle = await coord.start(saga, {})
        await transport.settle()
        await coord.act(handle.saga_id, "cancel", actor="ana", reason="preview", dry_run=True)
        await coord.act(handle.saga_id, "cancel", actor="ana", reason="customer asked")
        await asyncio.wait_for(handle.result(), 10)
        with pytest.raises(Exception, match="already compensated"):
            await coord.act(handle.saga_id, "cancel", actor="bob", reason="again")
    audit = [r for r in caplog.records if r.name == "saga.audit"]
    assert len(audit) == 1  # not the dry run, not the refused one
    record = audit[0]
    assert record.getMessage() == (
        f"operator ana: cancel on saga {handle.saga_id} (done): customer asked"
    )
    fields = vars(record)
    assert (fields["actor"], fields["action"], fields["reason"]) == (
        "ana", "cancel", "customer asked",
    )  # fmt: skip
    assert fields["saga_id"] == handle.saga_id


async def test_the_access_log_in_json_never_shows_a_token() -> None:
    buffer = io.StringIO()
    access = logging.getLogger("saga.api.access")
    handler = make_handler("json", buffer)
    access.addHandler(handler)
    coordinator = Coordinator(
        InMemorySagaLog(), InMemoryTransport(Shop().participants), sagas=[order_saga()]
    )
    try:
        async with coordinator:
            server = await start_http(coordinator, port=0, config=ApiConfig(access_log=True))
            try:
                async with aiohttp.ClientSession() as session:
                    url = f"{server.url}/api/sagas?limit=5&token={SECRET}"
                    headers = {"Authorization": f"Bearer {SECRET}", "User-Agent": "probe/1"}
                    async with session.get(url, headers=headers) as response:
                        assert response.status in (200, 400)
                        status = response.status
            finally:
                await server.close()
    finally:
        access.removeHandler(handler)
    assert SECRET not in buffer.getvalue()
    (line,) = parsed(buffer)
    assert line["logger"] == "saga.api.access"
    assert line["method"] == "GET"
    assert line["path"] == "/api/sagas?limit=5&token=***"
    assert line["status"] == status
    assert line["client"] == "127.0.0.1"
    assert line["user_agent"] == "probe/1"
    assert isinstance(line["duration_s"], float)
    assert f'"GET /api/sagas?limit=5&token=*** HTTP/1.1" {status} ' in line["message"]


def test_log_format_option_reads_the_environment_and_refuses_bad_values() -> None:
    seen: list[str] = []

    @click.command()
    @log_format_option()
    def command(log_format: str) -> None:
        seen.append(log_format)

    runner = CliRunner()
    assert runner.invoke(command, []).exit_code == 0
    assert runner.invoke(command, [], env={"SAGA_LOG_FORMAT": "json"}).exit_code == 0
    assert runner.invoke(command, ["--log-format", "text"]).exit_code == 0
    bad = runner.invoke(command, ["--log-format", "xml"])
    assert bad.exit_code == 2
    assert "'xml' is not one of 'text', 'json'" in bad.output
    assert seen == ["text", "json", "text"]


@pytest.mark.parametrize("command", [["coordinator", "--help"], ["dev", "--help"]])
def test_coordinator_and_dev_offer_log_format(command: list[str]) -> None:
    target = main if command[0] == "coordinator" else dev
    args = command if target is main else command[1:]
    result = CliRunner().invoke(target, args)
    assert result.exit_code == 0, result.output
    assert "--log-format [text|json]" in result.output
    assert "SAGA_LOG_FORMAT" in result.output


def test_configure_logging_replaces_the_plain_stream_handler_only() -> None:
    root = logging.getLogger()
    kept = logging.NullHandler()
    plain = logging.StreamHandler(io.StringIO())
    before = list(root.handlers)
    level = root.level
    audit = logging.getLogger("saga.audit")
    audit_level = audit.level
    root.setLevel(logging.WARNING)
    root.addHandler(kept)
    root.addHandler(plain)
    try:
        configure_logging(None, "json")
        added = [h for h in root.handlers if h not in before and h is not kept]
        assert kept in root.handlers
        assert plain not in root.handlers
        assert len(added) == 1
        assert isinstance(added[0].formatter, logging.Formatter)
        assert type(added[0].formatter).__name__ == "JsonFormatter"
        assert root.level == logging.WARNING  # None kept the level -v set
        assert audit.isEnabledFor(logging.INFO)  # operator actions show anyway
    finally:
        audit.setLevel(audit_level)
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


def test_dev_log_file_in_json(tmp_path: Any) -> None:
    path = tmp_path / "coordinator.log"
    handler = log_file_handler(path, "json")
    logger = logging.getLogger("saga.test.devfile")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with saga_context("order-9", "stock", "forward", 1):
            logger.warning("connect to nats://user:hunter2@host:4222 failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["saga_id"] == "order-9"
    assert "hunter2" not in line["message"]


async def test_coordinator_lines_about_a_reply_carry_its_step(json_lines: io.StringIO) -> None:
    shop, log, clock = Shop(), InMemorySagaLog(), FakeClock()
    shop.fail["inventory.ship"] = 1  # after the pivot: "needs attention", then a retry
    saga = pivot_saga()
    async with Coordinator(
        log, InMemoryTransport(shop.participants), sagas=[saga], clock=clock
    ) as coord:
        handle = await coord.start(saga, {})

        def attention() -> list[dict[str, Any]]:
            lines = parsed(json_lines)
            return [x for x in lines if "needs attention" in x["message"]]

        for _ in range(1000):  # up to ~10 s on a loaded machine
            if attention():
                break
            await asyncio.sleep(0.01)
        await clock.advance(timedelta(seconds=1))
        result = await asyncio.wait_for(handle.result(), 10)
    assert result.status is SagaStatus.COMPLETED
    (line,) = attention()
    assert line["logger"] == "saga.coordinator.coordinator"
    assert line["saga_id"] == handle.saga_id
    assert (line["step"], line["direction"], line["attempt"]) == ("ship", "forward", 1)
