"""Participants fail, over a real NATS: killed mid-handler, down for longer than a step's
timeout, answering late and twice. Every saga still ends, and the business adds up.

The example services run as subprocesses (``python -m services.<name>``) with their own
SQLite databases, and the shop's invariants are read from those databases
(``tests.services.world.check_invariants``). The coordinator runs in the test process: it is
not what fails here, and in-process it can run variants of the order saga with short
timeouts. The late and duplicate replies come from in-process participants whose handlers
count every effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from examples.order_saga import ORDER_SAGA
from saga import (
    Coordinator,
    NatsTransport,
    Participant,
    Rejected,
    RetryPolicy,
    Saga,
    SagaResult,
    SagaStatus,
    SqlSagaLog,
    Step,
    StepKind,
)
from saga.dev import Child, Children, service_argv
from saga.events import EventType
from saga.participant import CommandContext, InMemoryIdempotencyStore
from saga.protocol import Command
from saga.transport.nats_server import NatsServer
from services.common import HANDLER_DELAY_ENV
from tests.services.conftest import (  # noqa: F401 (the two fixtures are requested by name)
    Databases,
    postgres_databases,
    sqlite_databases,
)
from tests.services.world import World, check_invariants, random_world, seed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
SETTLE_S = 90.0
FINAL = {SagaStatus.COMPLETED, SagaStatus.COMPENSATED}
RELEASED = re.compile(r"released (\d+) claims left in progress by a previous run")
REPLAYED = re.compile(r"stopped; (\d+) repeated commands answered from the record")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shop_databases(request: pytest.FixtureRequest) -> Databases:
    """Four SQLite files, or four PostgreSQL databases (tests/services/conftest.py)."""
    value: Databases = request.getfixturevalue(f"{request.param}_databases")
    return value


@pytest.fixture
def shop_files(request: pytest.FixtureRequest) -> Databases:
    """Four SQLite files."""
    value: Databases = request.getfixturevalue("sqlite_databases")
    return value


def variant(name: str, *, timeout: timedelta, stock_retry: RetryPolicy | None = None) -> Saga:
    """The order saga with shorter step timeouts and compensations retried at least once a
    second; ``stock_retry`` replaces the stock reservation's retry policy."""
    compensation_retry = RetryPolicy(
        initial_interval=timedelta(milliseconds=100), max_interval=timedelta(seconds=1),
        max_attempts=200,
    )  # fmt: skip
    steps = []
    for step in ORDER_SAGA.steps:
        changed = replace(step, timeout=timeout)
        if step.kind is StepKind.COMPENSATABLE:
            changed = replace(changed, compensation_retry=compensation_retry)
        if step.name == "reserve_stock" and stock_retry is not None:
            changed = replace(changed, retry=stock_retry)
        steps.append(changed)
    return replace(ORDER_SAGA, name=name, steps=tuple(steps))


@dataclass
class Shop:
    """The four example services as subprocesses, each replica restartable under its name."""

    nats_url: str
    databases: Databases
    children: Children
    replicas: dict[str, Child] = field(default_factory=dict)
    argv: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)

    async def start(
        self, counts: dict[str, int], *, env: dict[str, dict[str, str]] | None = None
    ) -> None:
        for service, count in counts.items():
            for replica in range(count):
                argv = service_argv(
                    service, self.nats_url, self.databases.services[service], replica=replica,
                    seed=False, flaky=0.3,
                )  # fmt: skip
                self.argv[f"{service}-{replica}"] = (argv, (env or {}).get(service, {}))
        await asyncio.gather(*(self.restart(name) for name in self.argv))

    async def restart(self, name: str) -> Child:
        """(Re)start one replica: the same argv, so the same instance name."""
        argv, env = self.argv[name]
        child = await self.children.start(name, argv, env)
        await self.children.wait_ready(child)
        self.replicas[name] = child
        return child

    async def kill(self, name: str) -> None:
        child = self.replicas[name]
        self.children.kill(child)
        assert await child.process.wait() == -signal.SIGKILL

    def signal_group(self, names: Iterable[str], sig: signal.Signals) -> None:
        for name in names:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.replicas[name].pid, sig)

    def logs(self, prefix: str) -> str:
        """Everything the replicas named ``prefix-*`` printed, across their restarts."""
        return "".join(
            c.log_tail(max_chars=10_000_000) for n, c in self.replicas.items()
            if n.startswith(f"{prefix}-")
        )  # fmt: skip


@contextlib.asynccontextmanager
async def shop(
    nats_server: NatsServer, databases: Databases, tmp_path: Path, world: World
) -> AsyncIterator[Shop]:
    await seed(world, databases.services)
    children = Children(log_dir=tmp_path / "logs", cwd=REPO)
    try:
        yield Shop(nats_url=nats_server.url, databases=databases, children=children)
    finally:
        await children.stop()


def new_world(n: int) -> World:
    seed_value = int(os.environ.get("SAGA_TEST_SEED", random.randrange(1 << 30)))
    print(f"world seed {seed_value} (SAGA_TEST_SEED reproduces it)")
    return random_world(random.Random(seed_value), n)


async def settle(handles: list[Any], seconds: float = SETTLE_S) -> list[SagaResult]:
    results: list[SagaResult] = await asyncio.wait_for(
        asyncio.gather(*(h.result() for h in handles)), seconds
    )
    return results


async def check_shop(world: World, results: list[SagaResult], databases: Databases) -> Counter[str]:
    statuses = {r.saga_id: r.status for r in results}
    assert set(statuses) == {o["order_id"] for o in world.orders}
    assert set(statuses.values()) <= FINAL, Counter(s.value for s in statuses.values())
    completed = {k for k, s in statuses.items() if s is SagaStatus.COMPLETED}
    await check_invariants(world, completed, databases.services)
    return Counter(s.value for s in statuses.values())


# -- (a) a replica SIGKILLed mid-handler, restarted under the same instance name ---------------


async def test_replicas_killed_mid_handler_and_restarted_keep_the_books(
    nats_server: NatsServer, shop_databases: Databases, tmp_path: Path
) -> None:
    """Replicas of payments and inventory are SIGKILLed again and again while sagas run.

    Their handlers wait 300 ms after each commit (SERVICE_HANDLER_DELAY_MS), so a kill lands
    between a committed effect and its recorded reply; the restarted replica releases its
    dead run's claims at once, and the retried command meets the business-level idempotency.
    """
    world = new_world(120)
    saga = variant("order_a", timeout=timedelta(seconds=2))
    victims = ["payments-0", "payments-1", "inventory-0", "inventory-1"]
    rng = random.Random()
    delay = {HANDLER_DELAY_ENV: "300"}
    async with shop(nats_server, shop_databases, tmp_path, world) as services:
        await services.start(
            {"orders": 1, "payments": 2, "inventory": 2, "shipping": 2},
            env={"payments": delay, "inventory": delay},
        )
        log = SqlSagaLog(shop_databases.log)
        async with Coordinator(log, NatsTransport(nats_server.url), sagas=[saga]) as coordinator:

            async def feed() -> list[Any]:
                handles = []
                for order in world.orders:
                    handles.append(await coordinator.start(saga, order, saga_id=order["order_id"]))
                    await asyncio.sleep(0.1)
                return handles

            feeding = asyncio.create_task(feed())
            released: list[int] = []
            kills = 0

            async def running() -> bool:
                moving = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
                return not feeding.done() or any(r.status in moving for r in await log.unfinished())

            # At least four kills, and on until one lands mid-handler while sagas still run (a
            # kill is random and a restart slow on a loaded machine, so several may miss;
            # orders stop coming after about 12 s, but their sagas run on).
            while kills < 4 or (sum(released) == 0 and kills < 60 and await running()):
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                victim = rng.choice(victims)
                await services.kill(victim)
                kills += 1
                restarted = await services.restart(victim)
                released += [int(n) for n in RELEASED.findall(restarted.output())]
            results = await settle(await feeding)
    outcomes = await check_shop(world, results, shop_databases)
    print(f"120 sagas, {kills} kills, claims released by restarts: {released}; {dict(outcomes)}")
    assert sum(released) > 0, "no kill landed while a handler was running"
    assert outcomes["completed"] > 0
    assert outcomes["compensated"] > 0


# -- (b) every replica of a service down for longer than a step's timeout, then back ----------

STEP_TIMEOUT = timedelta(seconds=1)
QUICK = variant(
    "order_quick", timeout=STEP_TIMEOUT,
    stock_retry=RetryPolicy(initial_interval=timedelta(milliseconds=100), max_attempts=3),
)  # fmt: skip
"""Gives up on the stock after three attempts (three timeouts at most: 3.3 s)."""
PATIENT = variant(
    "order_patient", timeout=STEP_TIMEOUT,
    stock_retry=RetryPolicy(
        initial_interval=timedelta(milliseconds=200), max_interval=timedelta(seconds=1),
        max_attempts=None, max_elapsed=timedelta(minutes=2),
    ),
)  # fmt: skip
"""Keeps trying to reserve the stock for two minutes."""
EXHAUSTED = "step 'reserve_stock' exhausted its retries"


async def wait_for_statuses(
    log: SqlSagaLog, saga_ids: Iterable[str], allowed: set[SagaStatus], seconds: float = 60
) -> None:
    async with asyncio.timeout(seconds):
        for saga_id in saga_ids:
            while (record := await log.get(saga_id)) is None or record.status not in allowed:  # noqa: ASYNC110 (polling the log)
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["killed", "frozen"])
async def test_a_service_down_longer_than_a_step_timeout_then_back(
    nats_server: NatsServer, shop_files: Databases, tmp_path: Path, how: str
) -> None:
    """Both inventory replicas are SIGKILLed (no responders) or SIGSTOPped (commands pile up
    unanswered and time out; on SIGCONT they are all answered, late) while order sagas start.

    Sagas whose stock step gives up after three attempts compensate; sagas whose policy
    retries for two minutes complete once inventory is back.
    """
    world = new_world(40)
    inventory = ["inventory-0", "inventory-1"]
    async with shop(nats_server, shop_files, tmp_path, world) as services:
        await services.start({"orders": 1, "payments": 1, "inventory": 2, "shipping": 1})
        log = SqlSagaLog(shop_files.log)
        transport = NatsTransport(nats_server.url)
        async with Coordinator(log, transport, sagas=[QUICK, PATIENT]) as coordinator:
            if how == "killed":
                for name in inventory:
                    await services.kill(name)
            else:
                services.signal_group(inventory, signal.SIGSTOP)
            try:
                sagas = {
                    o["order_id"]: PATIENT if i % 2 else QUICK for i, o in enumerate(world.orders)
                }
                handles = [
                    await coordinator.start(sagas[o["order_id"]], o, saga_id=o["order_id"])
                    for o in world.orders
                ]
                # Down for longer than a step's timeout, and until every quick saga gave up.
                await asyncio.sleep(2 * STEP_TIMEOUT.total_seconds())
                quick = [k for k, s in sagas.items() if s is QUICK]
                await wait_for_statuses(
                    log, quick, {SagaStatus.COMPENSATING, SagaStatus.COMPENSATED}
                )
                patient = [k for k, s in sagas.items() if s is PATIENT]
                still_running = [
                    k for k in patient
                    if (r := await log.get(k)) is not None and r.status is SagaStatus.RUNNING
                ]  # fmt: skip
                assert still_running, "every patient saga ended while inventory was down"
            finally:
                if how == "killed":
                    await asyncio.gather(*(services.restart(name) for name in inventory))
                else:
                    services.signal_group(inventory, signal.SIGCONT)
            results = await settle(handles)
        await services.children.stop()
        replayed = sum(int(n) for n in REPLAYED.findall(services.logs("inventory")))
    outcomes = await check_shop(world, results, shop_files)
    by_id = {r.saga_id: r for r in results}
    quick_ends = Counter((by_id[k].status.value, by_id[k].compensation_reason) for k in quick)
    patient_ends = Counter((by_id[k].status.value, by_id[k].compensation_reason) for k in patient)
    print(f"{how}: quick {dict(quick_ends)}; patient {dict(patient_ends)}; replayed {replayed}")
    assert not [k for k in quick if by_id[k].status is SagaStatus.COMPLETED]
    assert (SagaStatus.COMPENSATED.value, EXHAUSTED) in quick_ends
    assert not [k for k in patient if by_id[k].compensation_reason == EXHAUSTED]
    completed_late = [k for k in still_running if by_id[k].status is SagaStatus.COMPLETED]
    assert completed_late, "no patient saga completed after inventory came back"
    assert outcomes["compensated"] > 0
    if how == "frozen":
        # The piled-up attempts of one key were answered once, then from the record.
        assert replayed > 0


# -- (c) a reply after the timeout, and every reply twice ----------------------------------------

LATE_AND_TWICE = Saga(
    name="late_and_twice",
    steps=(
        Step(
            name="hold", service="slowpoke", command="hold", compensation="unhold",
            timeout=timedelta(milliseconds=500),
            retry=RetryPolicy(initial_interval=timedelta(milliseconds=100), max_attempts=20),
        ),
        Step(
            name="pay", service="twice", command="pay", compensation="refund",
            timeout=timedelta(seconds=5),
        ),
        Step(
            name="confirm", service="twice", command="confirm", kind=StepKind.PIVOT,
            timeout=timedelta(seconds=5),
        ),
    ),
)  # fmt: skip
"""slowpoke answers its first ``hold`` of each saga after the step's timeout; every command
to ``twice`` is answered by two responders."""


class LateAndTwice:
    """The two services, counting every effect per (command, saga)."""

    def __init__(self) -> None:
        self.effects: Counter[tuple[str, str]] = Counter()
        self.slowpoke = Participant("slowpoke")
        store = InMemoryIdempotencyStore()
        # Two replicas of one service sharing an idempotency store: one in the queue group,
        # the other (misconfigured) subscribed outside it, so it gets every command too.
        self.twice = [Participant("twice", store=store), Participant("twice", store=store)]
        self.slowed: set[str] = set()
        self._counted(self.slowpoke, "unhold")

        @self.slowpoke.command("hold")
        async def hold(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if ctx.saga_id not in self.slowed:
                self.slowed.add(ctx.saga_id)
                await asyncio.sleep(3)  # six timeouts' worth: retries are sent meanwhile
            self.effects[("hold", ctx.saga_id)] += 1
            return {"held": ctx.saga_id}

        for participant in self.twice:
            for command in ("pay", "refund", "confirm"):
                self._counted(participant, command)

    def _counted(self, participant: Participant, command: str) -> None:
        @participant.command(command)
        async def handler(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if command == "confirm" and request.get("refuse"):
                raise Rejected("not confirmed", code="refused")
            self.effects[(command, ctx.saga_id)] += 1
            return {command: ctx.saga_id}

    @contextlib.asynccontextmanager
    async def serving(self, url: str) -> AsyncIterator[None]:
        rogue = self.twice[1]

        async def answer(msg: Msg) -> None:
            command = Command.decode(
                service="twice", command=msg.subject.rpartition(".")[2], headers=msg.headers,
                body=msg.data,
            )  # fmt: skip
            reply = await rogue.handle(command)
            await raw.publish(msg.reply, reply.encode())

        raw = await nats.connect(url)
        try:
            await raw.subscribe("twice.*", cb=answer)
            async with self.slowpoke.serving(url), self.twice[0].serving(url):
                yield
        finally:
            await raw.drain()


async def test_late_replies_and_duplicate_replies_change_nothing(
    nats_server: NatsServer, sqlite_url: str
) -> None:
    services = LateAndTwice()
    transport = NatsTransport(nats_server.url)
    log = SqlSagaLog(sqlite_url)
    inputs = {f"late-{i}": {"refuse": i == 0} for i in range(6)}
    coordinator = Coordinator(log, transport, sagas=[LATE_AND_TWICE])
    async with services.serving(nats_server.url), coordinator:
        handles = [
            await coordinator.start(LATE_AND_TWICE, value, saga_id=saga_id)
            for saga_id, value in inputs.items()
        ]
        results = {r.saga_id: r for r in await settle(handles, 60)}
        events = {saga_id: await log.events(saga_id) for saga_id in inputs}

    assert results.pop("late-0").status is SagaStatus.COMPENSATED
    assert {r.status for r in results.values()} == {SagaStatus.COMPLETED}
    # Nothing doubled: each effect once per saga, whoever answered and however often.
    assert set(services.effects.values()) == {1}
    assert services.effects[("refund", "late-0")] == services.effects[("unhold", "late-0")] == 1
    for saga_id in results:
        assert services.effects[("pay", saga_id)] == services.effects[("confirm", saga_id)] == 1
    for saga_events in events.values():
        hold = [
            (e.type, e.data.get("attempt")) for e in saga_events
            if e.data.get("step") == "hold" and e.data.get("direction") == "forward"
        ]  # fmt: skip
        # Attempt 1 timed out and a retry went out before the (late) success was recorded.
        assert hold[:2] == [(EventType.STEP_SENT, 1), (EventType.STEP_FAILED, 1)], hold
        assert (EventType.STEP_SENT, 2) in hold
        assert hold[-1][0] is EventType.STEP_SUCCEEDED
        assert [t for t, _ in hold].count(EventType.STEP_SUCCEEDED) == 1
    # The second reply to each command to ``twice`` arrived and was dropped.
    twice_commands = 2 * len(results) + 3  # pay and confirm, and for late-0 pay, confirm, refund
    assert transport.unmatched_replies >= twice_commands
    assert services.slowpoke.replayed >= len(inputs)  # the retries waited, then got the record
