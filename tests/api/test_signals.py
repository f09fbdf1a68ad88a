"""POST /api/sagas/{saga}/events/{event}: the signal role, the answers, every refusal (logged,
changing nothing), browser safety, the token options, and ``saga event``.

``Coordinator.signal`` is a stand-in here (tests/transport/signal_fake.py) that keeps to the
design's contract; the saga, its log and the coordinator are real.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from saga import Coordinator, SagaStatus
from saga.api import ApiConfig, Role, Token, create_app
from saga.api.config import tokens_from_file
from saga.api.options import http_settings
from saga.cli import main
from saga.engine import replay
from saga.errors import LogError
from saga.testing import Fault, InMemorySagaLog, InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS, VIEWER
from tests.coordinator.shop import Shop, order_saga
from tests.transport.signal_fake import APPROVAL, FakeSignals, approval_saga, hold_forever

SIGNAL = {"Authorization": "Bearer signal-secret-1"}
SIGNAL_TOKEN = Token(secret="signal-secret-1", role=Role.SIGNAL, name="webhook")
PATH = f"/api/sagas/a-1/events/{APPROVAL}"


@pytest.fixture
async def coordinator() -> AsyncIterator[Coordinator]:
    shop = Shop()
    transport = InMemoryTransport(shop.participants, intercept=hold_forever)
    coordinator = Coordinator(
        InMemorySagaLog(), transport, sagas=[approval_saga(), order_saga()], max_input_bytes=2048
    )
    async with coordinator:
        await coordinator.start("approve", {}, saga_id="a-1")
        yield coordinator


@pytest.fixture
def fake(coordinator: Coordinator) -> FakeSignals:
    return FakeSignals(coordinator)


@pytest.fixture
async def client(
    coordinator: Coordinator, fake: FakeSignals
) -> AsyncIterator[TestClient[Any, Any]]:
    config = ApiConfig(tokens=(*TOKENS, SIGNAL_TOKEN), max_body_bytes=8192)
    async with TestClient(TestServer(create_app(coordinator, config))) as client:
        yield client


async def events_of(coordinator: Coordinator, saga_id: str = "a-1") -> int:
    return len(await coordinator.log.events(saga_id))


async def test_a_signal_token_sends_an_event_and_is_the_recorded_sender(
    client: TestClient[Any, Any], fake: FakeSignals
) -> None:
    body = {"id": "mail-7", "payload": {"by": "dana", "amount": 120}}
    response = await client.post(PATH, json=body, headers=SIGNAL)
    assert response.status == 201, await response.text()
    assert await response.json() == {
        "saga_id": "a-1", "event": APPROVAL, "id": "mail-7", "recorded": True,
        "step": "approval", "status": "running",
    }  # fmt: skip
    [call] = fake.calls
    assert (call.saga_id, call.event, call.event_id) == ("a-1", APPROVAL, "mail-7")
    assert call.payload == {"by": "dana", "amount": 120}
    assert call.sender == "webhook"
    # A repeat of the id: 200, nothing recorded again.
    again = await client.post(PATH, json={"id": "mail-7", "payload": {"other": 1}}, headers=SIGNAL)
    assert again.status == 200
    assert (await again.json())["recorded"] is False
    assert len(fake.calls) == 1


async def test_the_payload_is_optional_and_an_operator_may_send_events(
    client: TestClient[Any, Any], fake: FakeSignals
) -> None:
    response = await client.post(PATH, json={"id": "by-hand"}, headers=OPERATOR)
    assert response.status == 201
    [call] = fake.calls
    assert (call.payload, call.sender) == ({}, "ana")


async def test_a_signal_token_reads_nothing_and_a_viewer_sends_no_events(
    client: TestClient[Any, Any], fake: FakeSignals
) -> None:
    for path in ("/api/sagas", "/api/sagas/a-1", "/api/me", "/api/compensations", "/metrics"):
        response = await client.get(path, headers=SIGNAL)
        assert response.status == 403, path
        assert (
            "needs the viewer role; the token is a signal"
            in (await response.json())["error"]["message"]
        )
    start = await client.post("/api/sagas/order", json={}, headers=SIGNAL)
    assert start.status == 403
    cancel = await client.post(
        "/api/sagas/a-1/actions/cancel", json={"reason": "no"}, headers=SIGNAL
    )
    assert cancel.status == 403
    viewer = await client.post(PATH, json={"id": "v-1"}, headers=VIEWER)
    assert viewer.status == 403
    assert "needs the signal role" in (await viewer.json())["error"]["message"]
    anonymous = await client.post(PATH, json={"id": "v-1"})
    assert anonymous.status == 401
    assert fake.calls == []


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/sagas/nobody/events/manager_approved", {"id": "x"}, 404, "no saga 'nobody'"),
        ("/api/sagas/a-1/events/paid", {"id": "x"}, 422, "waits for: 'manager_approved'"),
        ("/api/sagas/a%20b/events/manager_approved", {"id": "x"}, 400, "'saga_id' 'a b'"),
        ("/api/sagas/a-1/events/manager.approved", {"id": "x"}, 400, "not an event name"),
        (PATH, {}, 400, "'id' is missing"),
        (PATH, {"id": "a/b"}, 400, "'id' 'a/b' is not an event id"),
        (PATH, {"id": 7}, 400, "'id' of type int"),
        (PATH, {"id": "x", "payload": None}, 400, "not null"),
        (PATH, {"id": "x", "payload": [1, 2]}, 400, "not list"),
        (PATH, {"id": "x", "saga_id": "other"}, 400, "unknown fields 'saga_id'"),
        (PATH, [1], 400, "must be a JSON object"),
        (PATH, {"id": "x", "payload": {"big": "a" * 3000}}, 413, "over the 2048 byte limit"),
    ],
)
async def test_each_refusal_is_answered_logged_with_the_sender_and_changes_nothing(
    client: TestClient[Any, Any],
    coordinator: Coordinator,
    fake: FakeSignals,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: Any,
    status: int,
    words: str,
) -> None:
    before = await events_of(coordinator)
    caplog.set_level(logging.INFO, logger="saga.coordinator.signals")
    response = await client.post(path, json=body, headers=SIGNAL)
    assert response.status == status, await response.text()
    assert words in (await response.json())["error"]["message"]
    assert fake.calls == []
    assert await events_of(coordinator) == before
    lines = [r.getMessage() for r in caplog.records if r.name == "saga.coordinator.signals"]
    assert len(lines) == 1, lines
    assert "refused event" in lines[0]
    assert "from webhook" in lines[0]


async def test_bad_json_and_an_oversize_body_are_refused(
    client: TestClient[Any, Any], fake: FakeSignals
) -> None:
    headers = {**SIGNAL, "Content-Type": "application/json"}
    broken = await client.post(PATH, data=b'{"id": ', headers=headers)
    assert broken.status == 400
    assert "not valid JSON" in (await broken.json())["error"]["message"]
    huge = await client.post(PATH, data=b'{"id": "x", "payload": "' + b"a" * 9000 + b'"}',
                             headers=headers)  # fmt: skip
    assert huge.status == 413
    assert fake.calls == []


async def test_a_finished_saga_or_a_step_that_took_another_event_is_a_conflict(
    client: TestClient[Any, Any], coordinator: Coordinator, fake: FakeSignals
) -> None:
    assert (await client.post(PATH, json={"id": "first"}, headers=SIGNAL)).status == 201
    other = await client.post(PATH, json={"id": "second"}, headers=SIGNAL)
    assert other.status == 409
    assert "took the event 'first'" in (await other.json())["error"]["message"]
    fake.finished.add("a-1")
    late = await client.post(PATH, json={"id": "third"}, headers=SIGNAL)
    assert late.status == 409
    assert "is compensated" in (await late.json())["error"]["message"]


async def test_a_log_outage_is_503(
    client: TestClient[Any, Any], coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: Any, **kwargs: Any) -> Any:
        raise LogError("the database is down", saga_id="a-1")

    monkeypatch.setattr(coordinator, "signal", down)
    response = await client.post(PATH, json={"id": "x"}, headers=SIGNAL)
    assert response.status == 503


async def test_the_browser_guard_covers_events(
    client: TestClient[Any, Any], fake: FakeSignals
) -> None:
    cross = await client.post(
        PATH, json={"id": "x"}, headers={**SIGNAL, "Origin": "https://evil.example"}
    )
    assert cross.status == 403
    site = await client.post(
        PATH, json={"id": "x"}, headers={**SIGNAL, "Sec-Fetch-Site": "cross-site"}
    )
    assert site.status == 403
    form = await client.post(
        PATH, data=b'{"id": "x"}', headers={**SIGNAL, "Content-Type": "text/plain"}
    )
    assert form.status == 415
    assert fake.calls == []


async def test_without_auth_the_sender_is_api(coordinator: Coordinator, fake: FakeSignals) -> None:
    async with TestClient(TestServer(create_app(coordinator, ApiConfig()))) as client:
        response = await client.post(PATH, json={"id": "x"})
        assert response.status == 201
    assert [call.sender for call in fake.calls] == ["api"]


def test_signal_tokens_come_from_the_options_the_environment_and_the_token_file(
    tmp_path: Path,
) -> None:
    settings = http_settings("127.0.0.1:0", token_signal=("hook:hook-secret-1",))
    [token] = settings.config.tokens
    assert (token.role, token.name, token.secret) == (Role.SIGNAL, "hook", "hook-secret-1")
    path = tmp_path / "tokens"
    path.write_text("signal:stripe:stripe-secret-1\nviewer:v:view-secret-1\n")
    assert [(t.role, t.name) for t in tokens_from_file(path)] == [
        (Role.SIGNAL, "stripe"), (Role.VIEWER, "v"),
    ]  # fmt: skip
    path.write_text("admin:root:root-secret-1\n")
    with pytest.raises(ValueError, match="ROLE one of viewer, operator, signal"):
        tokens_from_file(path)
    help_text = CliRunner().invoke(main, ["coordinator", "--help"]).output
    assert "--token-signal" in help_text
    assert "SAGA_TOKEN_SIGNAL" in help_text


def test_only_the_operator_role_allows_everything() -> None:
    allowed = {(have, need) for have in Role for need in Role if have.allows(need)}
    assert allowed == {
        (Role.OPERATOR, Role.OPERATOR), (Role.OPERATOR, Role.VIEWER),
        (Role.OPERATOR, Role.SIGNAL), (Role.VIEWER, Role.VIEWER), (Role.SIGNAL, Role.SIGNAL),
    }  # fmt: skip


async def test_saga_event_sends_one_over_http(
    client: TestClient[Any, Any], fake: FakeSignals
) -> None:
    url = str(client.make_url("")).rstrip("/")
    env = {"SAGA_API_URL": url, "SAGA_API_TOKEN": "signal-secret-1"}

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["event", *args], env=env)

    done = await asyncio.to_thread(
        run, "a-1", APPROVAL, "--id", "cli-1", "--payload", '{"ok": true}'
    )
    assert done.exit_code == 0, done.output
    assert "completed the step approval of a-1" in done.output
    [call] = fake.calls
    assert (call.event_id, call.payload, call.sender) == ("cli-1", {"ok": True}, "webhook")
    again = await asyncio.to_thread(run, "a-1", APPROVAL, "--id", "cli-1", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["recorded"] is False
    wrong = await asyncio.to_thread(run, "a-1", "paid", "--id", "cli-2")
    assert wrong.exit_code != 0
    assert "422: no step of saga 'a-1'" in wrong.output
    bad = await asyncio.to_thread(run, "a-1", APPROVAL, "--id", "x", "--payload", "[1]")
    assert bad.exit_code != 0
    assert "must be a JSON object" in bad.output
    assert len(fake.calls) == 1


# -- with the real Coordinator.signal ---------------------------------------------------------


def lose(step: str) -> Any:
    """An interceptor that loses the commands of ``step``: the saga stays in flight there."""
    return lambda command: Fault.LOSE_COMMAND if command.step == step else Fault.DELIVER


@pytest.fixture
async def real() -> AsyncIterator[tuple[Coordinator, TestClient[Any, Any], InMemoryTransport]]:
    shop = Shop()
    transport = InMemoryTransport(shop.participants)
    coordinator = Coordinator(InMemorySagaLog(), transport, sagas=[approval_saga()])
    config = ApiConfig(tokens=(*TOKENS, SIGNAL_TOKEN))
    async with coordinator, TestClient(TestServer(create_app(coordinator, config))) as client:
        yield coordinator, client, transport


async def test_an_event_completes_the_wait_step_and_its_payload_is_the_result(
    real: tuple[Coordinator, TestClient[Any, Any], InMemoryTransport],
) -> None:
    coordinator, client, _ = real
    await coordinator.start("approve", {}, saga_id="r-1")
    assert await reaches_step(coordinator, "r-1", "approval")
    body = {"id": "mail-1", "payload": {"by": "dana"}}
    response = await client.post(f"/api/sagas/r-1/events/{APPROVAL}", json=body, headers=SIGNAL)
    assert response.status == 201, await response.text()
    answer = await response.json()
    assert (answer["recorded"], answer["step"]) == (True, "approval")
    result = await asyncio.wait_for(coordinator.wait("r-1"), 10)
    assert result.status is SagaStatus.COMPLETED
    state = replay(await coordinator.log.events("r-1"))
    assert state.results()["approval"] == {"by": "dana"}
    [signal] = state.signals
    assert (signal.id, signal.sender, signal.step) == ("mail-1", "webhook", "approval")
    repeat = await client.post(f"/api/sagas/r-1/events/{APPROVAL}", json=body, headers=SIGNAL)
    assert repeat.status == 200  # a sender retrying after the saga finished hears "taken"
    assert (await repeat.json())["recorded"] is False
    late = {"id": "mail-2", "payload": {"by": "eve"}}
    refused = await client.post(f"/api/sagas/r-1/events/{APPROVAL}", json=late, headers=SIGNAL)
    assert refused.status == 409  # the saga is finished


async def test_an_early_event_is_kept_and_a_repeat_changes_nothing(
    real: tuple[Coordinator, TestClient[Any, Any], InMemoryTransport],
) -> None:
    coordinator, client, transport = real
    transport.intercept = lose("hold")
    await coordinator.start("approve", {}, saga_id="r-2")
    path = f"/api/sagas/r-2/events/{APPROVAL}"
    first = await client.post(path, json={"id": "early", "payload": {"n": 1}}, headers=SIGNAL)
    assert first.status == 201, await first.text()
    assert (await first.json())["step"] is None  # kept for the wait step
    before = len(await coordinator.log.events("r-2"))
    again = await client.post(path, json={"id": "early", "payload": {"n": 2}}, headers=SIGNAL)
    assert again.status == 200
    assert (await again.json())["recorded"] is False
    assert len(await coordinator.log.events("r-2")) == before
    not_awaited = await client.post("/api/sagas/r-2/events/paid", json={"id": "x"}, headers=SIGNAL)
    assert not_awaited.status == 422
    assert len(await coordinator.log.events("r-2")) == before


async def test_a_wait_step_that_took_an_event_refuses_another(
    real: tuple[Coordinator, TestClient[Any, Any], InMemoryTransport],
) -> None:
    coordinator, client, transport = real
    transport.intercept = lose("ship")
    await coordinator.start("approve", {}, saga_id="r-3")
    assert await reaches_step(coordinator, "r-3", "approval")
    path = f"/api/sagas/r-3/events/{APPROVAL}"
    assert (await client.post(path, json={"id": "one"}, headers=SIGNAL)).status == 201
    before = len(await coordinator.log.events("r-3"))
    other = await client.post(path, json={"id": "two"}, headers=SIGNAL)
    assert other.status == 409, await other.text()
    assert len(await coordinator.log.events("r-3")) == before


async def reaches_step(coordinator: Coordinator, saga_id: str, step: str) -> bool:
    """Poll (bounded) until the saga waits at ``step``."""
    for _ in range(500):
        state = replay(await coordinator.log.events(saga_id))
        if step in state.pointers:
            return True
        await asyncio.sleep(0.02)
    return False
