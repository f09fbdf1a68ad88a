"""Several coordinators on one log: take-over after a lease, fencing, hand-back, operator
actions from any coordinator, balance. In-memory parts; tests/integration has PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from saga import Coordinator, Participant, RetryPolicy, Saga, SagaStatus, Step
from saga.participant import CommandContext
from saga.testing import InMemorySagaLog, InMemoryTransport

PATIENT = RetryPolicy(
    initial_interval=timedelta(milliseconds=20),
    max_interval=timedelta(milliseconds=100),
    max_attempts=None,
)
LEASE_MS = 400


class Work:
    """One service: ``first`` at once, ``second`` once ``gate`` opens; ``effects`` counts each
    (command, saga) whose handler really ran."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.effects: Counter[tuple[str, str]] = Counter()
        self.participant = Participant("work")
        for command in ("first", "undo_first", "second", "undo_second"):
            self.participant.command(command)(self._handler(command))

    def _handler(self, command: str) -> Any:
        async def handle(ctx: CommandContext, request: dict[str, Any]) -> dict[str, Any]:
            if command == "second":
                await self.gate.wait()
            self.effects[(command, ctx.saga_id)] += 1
            return {"done": command}

        return handle

    def transport(self) -> InMemoryTransport:
        return InMemoryTransport([self.participant])


def two_steps() -> Saga:
    return Saga(
        name="two",
        steps=(
            Step(name="a", service="work", command="first", compensation="undo_first",
                 retry=PATIENT, compensation_retry=PATIENT, timeout=timedelta(seconds=30)),
            Step(name="b", service="work", command="second", compensation="undo_second",
                 retry=PATIENT, compensation_retry=PATIENT, timeout=timedelta(seconds=30)),
        ),
    )  # fmt: skip


def coordinator(log: InMemorySagaLog, work: Work, name: str) -> Coordinator:
    return Coordinator(log, work.transport(), sagas=[two_steps()], name=name, lease_ms=LEASE_MS)


async def eventually(condition: Callable[[], bool], within_s: float = 30) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 (polls a coordinator's counters)
            await asyncio.sleep(0.02)


async def owners(log: InMemorySagaLog, saga_ids: list[str]) -> Counter[str | None]:
    found: Counter[str | None] = Counter()
    for saga_id in saga_ids:
        record = await log.get(saga_id)
        assert record is not None
        found[record.owner] += 1
    return found


async def test_a_coordinator_that_stops_renewing_is_taken_over_and_fenced() -> None:
    log, work = InMemorySagaLog(), Work()
    a, b = coordinator(log, work, "a"), coordinator(log, work, "b")
    async with a, b:
        ids = [(await a.start("two", {"i": i}, saga_id=f"s{i}")).saga_id for i in range(10)]
        await eventually(lambda: sum(n for (c, _), n in work.effects.items() if c == "first") == 10)
        # a is cut off from the database (it cannot renew) but keeps driving its sagas.
        assert a._lease_task is not None
        a._lease_task.cancel()
        await eventually(lambda: b.claimed >= 10)
        assert await owners(log, ids) == Counter({b.coordinator_id: 10})
        work.gate.set()  # the blocked attempts finish: a gets their replies and is fenced
        results = [await asyncio.wait_for(b.wait(saga_id), 30) for saga_id in ids]
        await eventually(lambda: a.fenced_writes >= 1)
        assert a.active_count == 0  # it let every fenced saga go
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert set(work.effects.values()) == {1}  # the re-sent commands were deduplicated
    await log.open()
    audit = await log.ownership.audit()
    assert audit.taken_over == 10
    assert audit.driven_by_two == 0
    for saga_id in ids:  # a recorded nothing after b claimed the saga
        (claim,) = [c for c in log.claims if c.saga_id == saga_id]
        assert set(log.epochs(saga_id)[claim.after_seq :]) == {claim.epoch}


async def test_a_clean_close_hands_sagas_back_for_another_to_finish() -> None:
    log, work = InMemorySagaLog(), Work()
    b = coordinator(log, work, "b")
    async with b:
        async with coordinator(log, work, "a") as a:
            ids = [(await a.start("two", {"i": i})).saga_id for i in range(5)]
            await eventually(lambda: len(work.effects) == 5)
            gone = a.coordinator_id
        records = [await log.get(saga_id) for saga_id in ids]
        assert all(r is not None and r.owner is None for r in records)  # handed back at once
        await eventually(lambda: b.claimed >= 5, within_s=10)
        work.gate.set()
        results = [await asyncio.wait_for(b.wait(saga_id), 30) for saga_id in ids]
        members = await log.ownership.members(include_ended_ms=60_000)
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert set(work.effects.values()) == {1}
    stopped = [m for m in members if m.coordinator_id == gone]
    assert stopped
    assert stopped[0].stopped_ms is not None


async def test_an_operator_action_through_another_coordinator_takes_the_saga() -> None:
    log, work = InMemorySagaLog(), Work()
    async with coordinator(log, work, "a") as a, coordinator(log, work, "b") as b:
        handle = await a.start("two", {}, saga_id="order-1")
        await eventually(lambda: ("first", "order-1") in work.effects)
        preview = await b.act(
            "order-1", "cancel", actor="ana", reason="customer asked", dry_run=True
        )
        assert preview.events  # what it would do; the saga stays where it is
        assert (await log.get("order-1")).owner == a.coordinator_id  # type: ignore[union-attr]
        await b.cancel("order-1", "customer asked", actor="ana")
        assert (await log.get("order-1")).owner == b.coordinator_id  # type: ignore[union-attr]
        work.gate.set()
        result = await asyncio.wait_for(handle.result(), 30)  # a's handle follows the log
        await eventually(lambda: a.active_count == 0)
    assert result.status is SagaStatus.COMPENSATED
    assert work.effects[("undo_first", "order-1")] == 1


async def test_a_coordinator_joining_later_gets_a_share() -> None:
    log, work = InMemorySagaLog(), Work()
    async with coordinator(log, work, "a") as a:
        ids = [(await a.start("two", {"i": i})).saga_id for i in range(60)]
        await eventually(lambda: len(work.effects) == 60)
        async with coordinator(log, work, "b") as b:
            # 60 unfinished, two live: a hands back its surplus, b claims it.
            await eventually(lambda: b.active_count >= 25, within_s=20)
            assert a.active_count <= 35
            assert a.released >= 25
            work.gate.set()
            results = [await asyncio.wait_for(a.wait(saga_id), 30) for saga_id in ids]
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert set(work.effects.values()) == {1}
    await log.open()
    assert (await log.ownership.audit()).driven_by_two == 0


async def test_sagas_a_failed_claim_took_are_found_and_driven() -> None:
    from dataclasses import replace as with_

    from saga.coordinator.coordinator import saga_start
    from saga.errors import LogError

    log, work = InMemorySagaLog(), Work()
    work.gate.set()
    async with coordinator(log, work, "a") as a:
        real_claim = log.ownership.claim
        failures = []

        async def claim_then_lose_the_answer(coordinator_id: str, limit: int) -> Any:
            claims = await real_claim(coordinator_id, limit)
            if claims and not failures:
                failures.append(claims)
                raise LogError("connection lost during COMMIT")
            return claims

        log.ownership.claim = claim_then_lose_the_answer  # type: ignore[method-assign]
        # Unowned sagas appear (as after a hand-back): the claim takes them, then fails.
        for index in range(3):
            new = saga_start(two_steps(), {}, f"orphan-{index}", 1_700_000_000_000)
            await log.create(with_(new))
        await eventually(lambda: bool(failures))
        results = [await asyncio.wait_for(a.wait(f"orphan-{i}"), 30) for i in range(3)]
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert len(failures[0]) == 3
    assert set(work.effects.values()) == {1}


async def test_a_coordinator_that_finds_its_lease_expired_rejoins_and_finishes_its_sagas() -> None:
    log, work = InMemorySagaLog(), Work()
    async with coordinator(log, work, "a") as a:
        ids = [(await a.start("two", {"i": i})).saga_id for i in range(5)]
        await eventually(lambda: len(work.effects) == 5)
        first_id = a.coordinator_id
        real_renew = log.ownership.renew
        expired = []

        async def renew_once_too_late(coordinator_id: str, lease_ms: int, load: Any) -> bool:
            if not expired:
                expired.append(coordinator_id)
                return False  # as after a pause past the lease
            return await real_renew(coordinator_id, lease_ms, load)

        log.ownership.renew = renew_once_too_late  # type: ignore[method-assign]
        await eventually(lambda: a.leases_lost == 1 and a.active_count == 5)
        assert a.coordinator_id != first_id
        assert await owners(log, ids) == Counter({a.coordinator_id: 5})
        work.gate.set()
        results = [await asyncio.wait_for(a.wait(saga_id), 30) for saga_id in ids]
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert set(work.effects.values()) == {1}
