"""The saga page tells the compensation story as a picture: the pivot, undone and skipped
steps, durations, why it compensated in human words, labels that never overlap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from saga import Coordinator, Participant, Rejected, RetryPolicy, Saga, SagaStatus, Step, StepKind
from saga.api import ApiConfig, HttpServer, create_app
from saga.api.story import human_duration, human_text
from saga.log.base import SagaLog
from saga.participant import CommandContext
from saga.testing import InMemoryTransport
from tests.api.conftest import OPERATOR, TOKENS, VIEWER, reaches, settled

QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=5), max_attempts=3)
PATIENT = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff=1.0, max_attempts=100)
"""A refund waits while the charge it undoes is still running (after a timeout)."""
EVERY_MS = RetryPolicy(initial_interval=timedelta(milliseconds=1), backoff=1.0, max_attempts=20)
SLOW_UNDO = RetryPolicy(
    initial_interval=timedelta(hours=1), max_interval=timedelta(hours=1), max_attempts=3
)


class Store:
    """A web shop's services. ``refuse`` holds the commands that answer a business "no";
    ``flaky`` how many times a command fails before it works; ``takes`` how long one runs."""

    def __init__(self) -> None:
        self.refuse: dict[str, str] = {}
        self.flaky: dict[str, int] = {}
        self.takes: dict[str, float] = {}
        self.participants = []
        commands = {
            "inventory": ("reserve", "release"),
            "orders": ("create", "cancel"),
            "payment": ("charge", "refund"),
            "shipping": ("dispatch",),
            "email": ("send",),
            "fraud": ("check", "forget"),
        }
        for service, names in commands.items():
            participant = Participant(service)
            for command in names:
                participant.command(command)(self._handler(f"{service}.{command}"))
            self.participants.append(participant)

    def _handler(self, name: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(self.takes.get(name, 0))
            if self.flaky.get(name, 0) > 0:
                self.flaky[name] -= 1
                raise RuntimeError(f"{name.split('.')[0]} is busy, try again")
            if name in self.refuse:
                raise Rejected(self.refuse[name], code="declined")
            return {"done": name}

        return handle


def checkout_saga(*, charge_timeout: timedelta = timedelta(seconds=10)) -> Saga:
    """Reserve, create the order, charge the card; ship (the pivot), then tell the customer."""
    return Saga(
        name="checkout",
        steps=(
            Step(name="reserve_stock", service="inventory", command="reserve",
                 compensation="release", retry=QUICK, compensation_retry=QUICK),
            Step(name="create_order", service="orders", command="create",
                 compensation="cancel", retry=QUICK, compensation_retry=QUICK),
            Step(name="charge_card", service="payment", command="charge", compensation="refund",
                 retry=RetryPolicy(max_attempts=1), timeout=charge_timeout,
                 compensation_retry=PATIENT),
            Step(name="ship", service="shipping", command="dispatch", kind=StepKind.PIVOT),
            Step(name="email_receipt", service="email", command="send", kind=StepKind.RETRIABLE),
        ),
    )  # fmt: skip


def flaky_saga() -> Saga:
    """A fraud check that fails eleven times and works on the twelfth, then a refusal."""
    return Saga(
        name="flaky",
        steps=(
            Step(name="fraud_check_with_a_rather_long_step_name", service="fraud", command="check",
                 compensation="forget", compensation_retry=QUICK, retry=EVERY_MS),
            Step(name="reserve_stock", service="inventory", command="reserve",
                 compensation="release", retry=QUICK, compensation_retry=QUICK),
            Step(name="charge_card", service="payment", command="charge", compensation="refund",
                 retry=QUICK, compensation_retry=QUICK),
        ),
    )  # fmt: skip


def undo_stalls_saga() -> Saga:
    """As checkout, with a refund that is retried only an hour later: it stays compensating."""
    return Saga(
        name="stalls",
        steps=(
            Step(name="reserve_stock", service="inventory", command="reserve",
                 compensation="release", retry=QUICK, compensation_retry=SLOW_UNDO),
            Step(name="charge_card", service="payment", command="charge", compensation="refund",
                 retry=QUICK, compensation_retry=QUICK),
        ),
    )  # fmt: skip


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
async def coordinator(store: Store, log: SagaLog) -> AsyncIterator[Coordinator]:
    sagas = [checkout_saga(), flaky_saga(), undo_stalls_saga()]
    coordinator = Coordinator(log, InMemoryTransport(store.participants), sagas=sagas)
    async with coordinator:
        yield coordinator


# -- the words -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "words"),
    [
        (0, "0 ms"), (250, "250 ms"), (1000, "1 s"), (1234, "1.2 s"), (42_000, "42 s"),
        (60_000, "1 min"), (184_000, "3 min 4 s"), (7_500_000, "2 h 5 min"),
        (97_200_000, "1 d 3 h"),
    ],
)  # fmt: skip
def test_durations_read_as_a_person_says_them(ms: int, words: str) -> None:
    assert human_duration(ms) == words


def test_recorded_messages_lose_timedeltas_and_python_reprs() -> None:
    assert human_text("no reply within 0:00:05") == "no reply within 5 s"
    assert human_text("no reply within 0:00:00.300000") == "no reply within 300 ms"
    assert human_text("event 'paid' did not arrive within 2 days, 0:00:00") == (
        "event paid did not arrive within 2 d"
    )
    assert human_text("request builder of 'ship' failed: KeyError('sku')") == (
        "request builder of ship failed: KeyError: sku"
    )
    assert human_text("card declined") == "card declined"


# -- the story in the API -----------------------------------------------------------------


@pytest.fixture
async def client(coordinator: Coordinator) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(coordinator, ApiConfig(tokens=TOKENS)))) as c:
        yield c


async def detail(client: TestClient[Any, Any], saga_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/sagas/{saga_id}", headers=VIEWER)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_a_refused_step_is_the_reason_in_the_past_tense(
    client: TestClient[Any, Any], coordinator: Coordinator, store: Store
) -> None:
    store.refuse["payment.charge"] = "card declined"
    await coordinator.start("checkout", {"order": "A-1"}, saga_id="refused")
    assert await settled(coordinator, "refused") is SagaStatus.COMPENSATED
    found = await detail(client, "refused")
    story = found["timeline"]["story"]
    assert story["sentence"] == "Compensated because payment.charge was refused: card declined."
    assert story["tense"] == "past"
    assert story["because"] == {
        "kind": "refused",
        "step": "charge_card",
        "text": "payment.charge was refused: card declined",
    }
    assert story["pivot"] == "ship"
    assert story["pivot_passed"] is False
    assert story["undone"] == ["create_order", "reserve_stock"]
    assert story["skipped"] == ["ship", "email_receipt"]
    steps = {e["step"]: e for e in found["timeline"]["steps"]}
    assert set(steps) == {"reserve_stock", "create_order", "charge_card"}  # states kept as before
    for entry in [*found["timeline"]["steps"], *found["timeline"]["compensations"]]:
        assert entry["duration_ms"] is not None
        assert entry["duration_ms"] >= 0
        for attempt in entry["attempts"]:
            assert attempt["duration_ms"] == attempt["finished_ms"] - attempt["sent_ms"]
    [charge] = steps["charge_card"]["attempts"]
    assert charge["error"]["text"] == "card declined"
    assert charge["error"]["code"] == "declined"  # recorded fields kept


async def test_a_timeout_reads_as_a_duration_not_a_timedelta(store: Store, log: SagaLog) -> None:
    store.takes["payment.charge"] = 0.6
    saga = checkout_saga(charge_timeout=timedelta(milliseconds=200))
    coordinator = Coordinator(log, InMemoryTransport(store.participants), sagas=[saga])
    async with coordinator:
        await coordinator.start("checkout", {}, saga_id="slow")
        assert await settled(coordinator, "slow") is SagaStatus.COMPENSATED
        async with TestClient(TestServer(create_app(coordinator, ApiConfig(tokens=TOKENS)))) as c:
            found = await detail(c, "slow")
    story = found["timeline"]["story"]
    assert story["sentence"] == "Compensated because payment.charge timed out after 200 ms."
    charge = next(e for e in found["timeline"]["steps"] if e["step"] == "charge_card")
    assert charge["attempts"][0]["error"]["text"] == "no reply within 200 ms"
    assert "0:00:" not in str(story) + str(charge["attempts"][0]["error"]["text"])


async def test_a_cancel_says_who_and_why_and_a_running_saga_speaks_in_the_present(
    client: TestClient[Any, Any], coordinator: Coordinator, store: Store
) -> None:
    store.refuse["payment.charge"] = "card declined"
    store.flaky["inventory.release"] = 1  # the first undo fails; the next try is an hour away
    await coordinator.start("stalls", {}, saga_id="undoing")
    assert await reaches(coordinator, "undoing", SagaStatus.COMPENSATING)
    story = (await detail(client, "undoing"))["timeline"]["story"]
    assert story["sentence"] == "Compensating because payment.charge was refused: card declined."
    assert story["tense"] == "present"

    store.refuse.clear()
    store.takes["payment.charge"] = 5.0  # in flight while the operator cancels
    await coordinator.start("checkout", {}, saga_id="cancelled")
    for _ in range(500):
        found = await detail(client, "cancelled")
        if found["actions"]["cancel"]["allowed"] and found["active"]:
            break
        await asyncio.sleep(0.02)
    response = await client.post(
        "/api/sagas/cancelled/actions/cancel", json={"reason": "customer changed mind"},
        headers=OPERATOR,
    )  # fmt: skip
    assert response.status == 200, await response.text()
    for _ in range(500):
        story = (await detail(client, "cancelled"))["timeline"]["story"]
        if story["because"] is not None:
            break
        await asyncio.sleep(0.02)
    assert story["because"]["kind"] == "cancelled"
    assert story["sentence"].endswith("because it was cancelled by ana: customer changed mind.")


# -- the picture ---------------------------------------------------------------------------


OVERLAPS = """svg => {
  const boxes = [...svg.querySelectorAll('text')]
    .map(t => [t.textContent, t.getBoundingClientRect()]);
  const hit = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [ta, a] = boxes[i], [tb, b] = boxes[j];
    const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
    if (!apart) hit.push([ta, tb]);
  }
  return [boxes.length, hit];
}"""


async def test_a_compensated_saga_shows_pivot_undone_skipped_and_why(
    page: Any, server: HttpServer, coordinator: Coordinator, store: Store, shots: Path
) -> None:
    store.refuse["payment.charge"] = "card declined"
    store.flaky["inventory.reserve"] = 1
    store.takes.update({"inventory.reserve": 0.3, "orders.create": 0.2, "payment.charge": 1.1,
                        "orders.cancel": 0.15, "inventory.release": 0.25})  # fmt: skip
    await coordinator.start("checkout", {"order": "A-1042", "sku": "mug"}, saga_id="order-1042")
    assert await settled(coordinator, "order-1042") is SagaStatus.COMPENSATED

    await page.goto(server.url + "/#/saga/order-1042")
    await page.wait_for_selector("#timeline g.step")
    story = await page.inner_text("#story")
    assert story == "Compensated because payment.charge was refused: card declined."
    assert "past" in (await page.get_attribute("#story", "class") or "")

    # The pivot: a marker on its box in the timeline and the graph, and in the legend.
    assert await page.locator('#timeline g.step[data-step="ship"] .pivot-marker').count() == 1
    assert await page.locator('#graph g.node[data-step="ship"] .pivot-marker').count() == 1
    assert "pivot" in await page.inner_text("#legend")
    # Undone: struck through and hatched, with an arrow back to the compensation.
    undone = await page.eval_on_selector_all(
        "#timeline g.step.forward.undone", "gs => gs.map(g => g.dataset.step)"
    )
    assert sorted(undone) == ["create_order", "reserve_stock"]
    for step in undone:
        box = page.locator(f'#timeline g.step.forward[data-step="{step}"]')
        assert await box.locator("line.strike").count() == 1
        assert await box.locator("rect").get_attribute("fill") == "url(#undone-hatch)"
        assert await page.locator(f'#timeline path.undo-arrow[data-step="{step}"]').count() == 1
    charge = page.locator('#timeline g.step.forward[data-step="charge_card"]')
    assert await charge.get_attribute("class") == "step forward cause"
    assert await charge.get_attribute("data-state") == "rejected"
    # Never run: skipped, in the timeline and the graph.
    skipped = await page.eval_on_selector_all(
        '#timeline g.step[data-state="skipped"]', "gs => gs.map(g => g.dataset.step)"
    )
    assert skipped == ["ship", "email_receipt"]
    assert await page.get_attribute('#graph g.node[data-step="ship"]', "data-state") == "skipped"

    # Durations in human words on every attempt, forward and back.
    rows = await page.eval_on_selector_all(
        "#attempts tbody tr",
        """trs => trs.map(tr => [tr.dataset.step, tr.dataset.direction,
                                tr.querySelector('td.took').innerText])""",
    )
    assert len(rows) == 6  # reserve twice, create, charge; two compensations
    for _, _, took in rows:
        assert took.endswith((" ms", " s")), rows
    reserve = [took for step, direction, took in rows if step == "reserve_stock"]
    assert len(reserve) == 3  # two tries forward, one back
    assert await page.locator("#timeline g.attempt").count() == 2  # reserve's two tries
    errors = await page.locator("#attempts td.error").all_inner_texts()
    assert "inventory is busy, try again" in " ".join(errors)
    text = await page.inner_text("body")
    assert "0:00:" not in text
    assert "RuntimeError(" not in text
    count, hits = await page.eval_on_selector("#timeline", OVERLAPS)
    assert count > 20
    assert hits == []

    # One colour per meaning: the badge, the legend and the drawing use the same variable.
    colours = await page.evaluate(
        """() => {
          const css = getComputedStyle(document.documentElement);
          const badge = document.querySelector('.facts .badge.compensated');
          const comp = document.querySelector('#timeline g.step.compensation rect');
          return [css.getPropertyValue('--c-undone').trim(),
                  getComputedStyle(badge).backgroundColor, comp.getAttribute('stroke')];
        }"""
    )
    undone_var, badge_bg, comp_stroke = colours
    assert comp_stroke == undone_var
    rgb = tuple(int(undone_var[i : i + 2], 16) for i in (1, 3, 5))
    assert badge_bg == "rgb({}, {}, {})".format(*rgb)

    shot = shots / "compensated.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


async def test_labels_never_overlap_with_a_dozen_attempts(
    page: Any, server: HttpServer, coordinator: Coordinator, store: Store, shots: Path
) -> None:
    store.flaky["fraud.check"] = 11
    store.refuse["payment.charge"] = "insufficient funds"
    await coordinator.start("flaky", {}, saga_id="flaky-1")
    assert await settled(coordinator, "flaky-1") is SagaStatus.COMPENSATED

    await page.goto(server.url + "/#/saga/flaky-1")
    await page.wait_for_selector("#timeline g.step")
    step = "fraud_check_with_a_rather_long_step_name"
    forward = f'#attempts tbody tr[data-step="{step}"][data-direction="forward"]'
    assert await page.locator(forward).count() == 12
    box = page.locator(f'#timeline g.step.forward[data-step="{step}"]')
    assert await box.locator("text.more").text_content() == "+5 more"
    assert await box.locator("g.attempt").count() == 7
    # The long name is cut to fit its box, whole in its tooltip.
    name = box.locator("text.name")
    assert (await name.text_content() or "").endswith("…")
    assert await name.get_attribute("data-full") == step
    assert await box.locator("g.fit > title").first.text_content() == step
    count, hits = await page.eval_on_selector("#timeline", OVERLAPS)
    assert count > 20
    assert hits == []
    count, hits = await page.eval_on_selector("#graph", OVERLAPS)
    assert hits == []
    story = await page.inner_text("#story")
    assert story == "Compensated because payment.charge was refused: insufficient funds."
    await page.screenshot(path=str(shots / "dozen-attempts.png"), full_page=True)


async def test_a_stuck_compensation_says_so_in_the_present(
    client: TestClient[Any, Any], coordinator: Coordinator, store: Store
) -> None:
    store.refuse["payment.charge"] = "card declined"
    store.flaky["orders.cancel"] = 100
    await coordinator.start("checkout", {}, saga_id="stuck")
    assert await settled(coordinator, "stuck") is SagaStatus.STUCK
    found = await detail(client, "stuck")
    story = found["timeline"]["story"]
    assert story["sentence"] == (
        "Stuck while compensating because payment.charge was refused: card declined."
        " Compensation of create_order keeps failing."
    )
    assert story["tense"] == "present"
    assert story["undone"] == []
    assert found["health"]["reason"] == "compensation of create_order keeps failing"
    assert found["health"]["last_error"]["text"] == "RuntimeError: orders is busy, try again"
