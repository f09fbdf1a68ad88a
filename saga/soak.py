"""``saga soak``: thousands of order sagas through coordinators SIGKILLed every few seconds.

From the root of a checkout, like ``saga dev``, it starts the nats-server from the wheel, the
four example services as subprocesses (``--replicas`` each, on their own databases) and
``--coordinators`` ``saga coordinator --http`` subprocesses (``coord-<i>``, one saga log), one
of which it SIGKILLs every ``--kill-every`` seconds (at a random moment around that) and
restarts; with ``--pause-every`` it also SIGSTOPs one past its lease (``--lease``) and SIGCONTs
it, so the others take its sagas over and its late writes are fenced (``saga.soak_fleet``). It
starts ``--sagas`` order sagas with a realistic mix (customers short of credit, items out of
stock, a flaky courier) through ``POST /api/definitions/order/sagas``, round robin over the
coordinators, with saga ids of its own, retrying at the next coordinator while one is down
(a start with a known id is idempotent), and keeps at most ``--in-flight`` of them unfinished,
counted in the log. Once every saga has ended it checks the shop's books in the services'
own databases (``services/world.py``, the checks the test suite uses) and the ownership audit
of the log, prints the figures, and exits non-zero if a saga was lost, stuck, an effect applied
twice, driven by two coordinators at once, or if an invariant failed.

The services are subprocesses, not in-process participants: each has its own interpreter,
database pool and event loop, as in production, and the figure they alone know (repeated
commands answered from the record) is in the line each prints when it is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import click
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from saga.checkout import find_checkout, load_from_checkout
from saga.cli_options import db_option
from saga.dev import NATS_READY_MARK, SERVICES, Children, service_argv
from saga.events import SagaStatus
from saga.log.base import SagaQuery
from saga.log.ownership import DEFAULT_LEASE_MS, Audit
from saga.log.sql import SqlSagaLog
from saga.redact import redact_url as redact
from saga.soak_fleet import CoordinatorProcess, Fleet
from saga.testing.postgres import create_databases, drop_databases
from saga.transport.nats_server import free_port, nats_server_binary

POSTGRES_ENV = "SAGA_TEST_POSTGRES_URL"
REPLAYED = re.compile(r"stopped; (\d+) repeated commands answered from the record")
UNSETTLED = [SagaStatus.RUNNING, SagaStatus.COMPENSATING]
PROGRESS_EVERY_S = 30.0
SEVERAL_COORDINATORS_LEASE_S = 2.0
"""The soak's lease with several coordinators: short, so pauses past it come quickly."""
EVERY_COORDINATOR_MS = 365 * 24 * 3600 * 1000
"""``members(include_ended_ms=...)``: long enough to include every coordinator of the run."""
START_RETRY_FOR_S = 300.0
"""How long one start is retried while the coordinator is down (it restarts in seconds)."""
START_RETRY_WAIT = wait_random_exponential(multiplier=0.1, max=2.0)
"""Jittered back-off, so the workers do not all hit a restarted coordinator at once."""
_PG_NAME = re.compile(r"^[A-Za-z0-9_]{1,48}$")
_CLEAN_ENV = {
    # A soak's children must not inherit settings meant for another run.
    "SAGA_TOKEN_VIEWER": "", "SAGA_TOKEN_OPERATOR": "",
    "SERVICE_HANDLER_DELAY_MS": "",
}  # fmt: skip

Echo = Callable[[str], None]


class SoakError(click.ClickException):
    """The soak could not run (as opposed to ran and found a fault)."""


class _UnavailableError(Exception):
    """A 5xx answer to a start: the coordinator is starting, stopping or was killed."""


@dataclass(frozen=True, kw_only=True)
class SoakOptions:
    sagas: int
    kill_every_s: float
    coordinators: int
    pause_every_s: float
    lease_s: float | None
    db_url: str | None
    replicas: int
    seed: int
    flaky: float
    in_flight: int
    timeout_s: float
    keep: bool
    folder: Path


# -- the shop: customers, stock and orders ------------------------------------------------------


def soak_world(world_module: ModuleType, rng: random.Random, n: int, run: str) -> Any:
    """A shop sized for ``n`` orders: one customer can afford nothing and one runs out of
    credit about halfway; one SKU is never in stock and two run out along the way."""
    plenty = n * 3_000
    credit = {name: plenty for name in ("ann", "ben", "cat", "dan", "eve", "fay")}
    credit |= {"gus": 0, "hal": n * 40}
    stock = {sku: n * 6 for sku in ("apple", "pear", "kiwi", "lime", "date")}
    stock |= {"plum": 0, "fig": n // 4, "yuzu": n // 10}
    orders = []
    for i in range(n):
        skus = rng.sample(sorted(stock), k=rng.randint(1, 2))
        items = [
            {"sku": sku, "qty": rng.randint(1, 3), "unit_price": rng.choice([50, 120, 400])}
            for sku in skus
        ]
        orders.append(
            {"order_id": f"soak-{run}-{i:05d}", "customer": rng.choice(sorted(credit)),
             "items": items}
        )  # fmt: skip
    return world_module.World(credit=credit, stock=stock, orders=orders)


# -- databases ------------------------------------------------------------------------------


@dataclass
class SoakDatabases:
    """The saga log's URL, each service's, and what to remove afterwards."""

    log: str
    services: dict[str, str]
    admin_url: str | None = None
    created_databases: list[str] = field(default_factory=list)
    created_files: list[Path] = field(default_factory=list)

    async def remove(self) -> None:
        if self.admin_url and self.created_databases:
            await drop_databases(self.admin_url, self.created_databases)
        await asyncio.to_thread(_unlink, self.created_files)


def _unlink(files: list[Path]) -> None:
    for path in files:
        # ".coordinator-lock": the file SQLite's one coordinator holds its flock on.
        for suffix in ("", "-wal", "-shm", "-journal", ".coordinator-lock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def prepare_databases(db_url: str | None, run: str) -> SoakDatabases:
    """A fresh saga log and four fresh service databases, on PostgreSQL or SQLite files."""
    if db_url is None:
        server = os.environ.get(POSTGRES_ENV)
        if not server:
            raise click.UsageError(
                f"give --db (a PostgreSQL or SQLite URL for the saga log) or set {POSTGRES_ENV}"
            )
        return await _postgres(server, f"saga_soak_{run}", must_create=True)
    scheme = urlsplit(db_url).scheme.lower()
    if scheme.startswith("postgres"):
        name = urlsplit(db_url).path.lstrip("/")
        return await _postgres(db_url, name, must_create=False)
    if scheme.startswith("sqlite") and db_url.partition(":///")[2]:
        return _sqlite(Path(db_url.partition(":///")[2]))
    raise click.BadParameter(f"{redact(db_url)!r}: expected postgresql://... or sqlite:///file.db")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.lower().startswith("postgres") else parts.scheme
    return urlunsplit((scheme, parts.netloc, f"/{name}", parts.query, ""))


async def _postgres(url: str, log_db: str, *, must_create: bool) -> SoakDatabases:
    import asyncpg  # type: ignore[import-untyped]

    if not _PG_NAME.match(log_db):
        raise click.BadParameter(f"database name {log_db!r}: use letters, digits and _ only")
    names = {service: f"{log_db}_{service}" for service in SERVICES}
    admin_url = _with_database(url, "postgres")
    try:
        admin = await asyncpg.connect(admin_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SoakError(f"cannot connect to PostgreSQL at {redact(admin_url)}: {exc}") from exc
    dbs = SoakDatabases(
        log=_with_database(url, log_db),
        services={s: _with_database(url, name) for s, name in names.items()},
        admin_url=admin_url,
    )
    try:
        exists = "SELECT 1 FROM pg_database WHERE datname = $1"
        log_exists = bool(await admin.fetchval(exists, log_db))
        taken = [name for name in names.values() if await admin.fetchval(exists, name)]
        taken += [log_db] if log_exists and must_create else []
        if taken:
            raise SoakError(f"databases {', '.join(taken)} exist already: drop them or pick --db")
        fresh = ([] if log_exists else [log_db]) + [*names.values()]
        await create_databases(admin_url, fresh)
        dbs.created_databases.extend(fresh)
    except BaseException:
        await admin.close()
        await dbs.remove()
        raise
    await admin.close()
    return dbs


def _sqlite(path: Path) -> SoakDatabases:
    path = path.resolve()
    files = {s: path.with_name(f"{path.stem}-{s}.db") for s in SERVICES}
    taken = [str(p) for p in files.values() if p.exists()]
    if taken:
        raise SoakError(f"{', '.join(taken)} exist already: remove them or pick another --db")
    path.parent.mkdir(parents=True, exist_ok=True)
    created = [*files.values()] + ([] if path.exists() else [path])
    return SoakDatabases(
        log=f"sqlite:///{path}",
        services={s: f"sqlite:///{p}" for s, p in files.items()},
        created_files=created,
    )


# -- feeding sagas through the HTTP API ---------------------------------------------------------


@dataclass
class Feed:
    """Starts order sagas over HTTP, round robin over the coordinators' start URLs, at most
    ``window`` unfinished at a time."""

    urls: list[str]
    """Each coordinator's ``.../api/definitions/order/sagas``; order ``i`` goes to
    ``urls[i % len]``."""
    log: SqlSagaLog
    window: int
    started: list[str] = field(default_factory=list)
    retried: int = 0
    """Start requests sent again: the coordinator was down or died while answering."""
    existing: int = 0
    """Retried starts answered 200 (created: false): the first one had created the saga."""
    unfinished: int = 0
    _room: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, orders: list[dict[str, Any]], workers: int = 8) -> None:
        queue = iter(enumerate(orders))
        self._room.set()
        poll = asyncio.create_task(self._poll())
        try:
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(*(self._worker(session, queue) for _ in range(workers)))
        finally:
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll

    async def count_unfinished(self) -> int:
        page = await self.log.find(SagaQuery(statuses=UNSETTLED, limit=max(self.window, 1000)))
        return len(page.sagas)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a busy database: keep the last figure
                self.unfinished = await self.count_unfinished()
                self._update_room()
            await asyncio.sleep(0.25)

    async def _worker(self, session: aiohttp.ClientSession, queue: Any) -> None:
        for index, order in queue:
            await self._room.wait()
            self.unfinished += 1  # until the next poll says how many really are
            self._update_room()
            await self._start(session, order, index)

    def _update_room(self) -> None:
        if self.unfinished < self.window:
            self._room.set()
        else:
            self._room.clear()

    async def _start(
        self, session: aiohttp.ClientSession, order: dict[str, Any], index: int = 0
    ) -> None:
        """POST one start until it is answered, each try at the next coordinator; a start
        with a known id is idempotent (whichever coordinator got it first), so resending
        after a lost answer is safe. Never resent after a 4xx."""
        body = {"input": order, "saga_id": order["order_id"]}
        timeout = aiohttp.ClientTimeout(total=15)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError, _UnavailableError)),
            stop=stop_after_delay(START_RETRY_FOR_S),
            wait=START_RETRY_WAIT,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                url = self.urls[(index + attempt.retry_state.attempt_number - 1) % len(self.urls)]
                with attempt:
                    async with session.post(url, json=body, timeout=timeout) as response:
                        text = await response.text()
                        if response.status >= 500:
                            raise _UnavailableError(f"{response.status}: {text}")
                        if response.status not in (200, 201):
                            raise SoakError(f"POST {url} answered {response.status}: {text}")
                    self.started.append(order["order_id"])
                    if response.status == 200 and attempt.retry_state.attempt_number > 1:
                        self.existing += 1
        except (aiohttp.ClientError, TimeoutError, _UnavailableError) as exc:
            raise SoakError(
                f"could not start saga {order['order_id']} in {START_RETRY_FOR_S:g} s: {exc!r}"
            ) from exc

    def _count_retry(self, _state: RetryCallState) -> None:
        self.retried += 1


# -- the run --------------------------------------------------------------------------------


@dataclass
class Figures:
    sagas: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    coordinators: int = 1
    kills: int = 0
    pauses: int = 0
    lease_s: float = DEFAULT_LEASE_MS / 1000
    replayed: dict[str, int | None] = field(default_factory=dict)
    twice: int | None = None
    lost: list[str] = field(default_factory=list)
    retried: int = 0
    existing: int = 0
    audit: Audit | None = None
    """Claims, take-overs and interleaved owners, from the log once the coordinators stopped."""
    fenced: int | None = None
    """Writes refused by the epoch, summed over every coordinator row of the log."""
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        known = [n for n in self.replayed.values() if n is not None]
        delivered = sum(known)
        per_service = ", ".join(f"{k} {'?' if v is None else v}" for k, v in self.replayed.items())
        if len(known) != len(self.replayed):
            per_service += "; ? = a replica did not report"
        taken = None if self.audit is None else self.audit.taken_over
        driven = None if self.audit is None else self.audit.driven_by_two
        rows = [
            ("sagas", str(self.sagas), ""),
            ("completed", str(self.statuses["completed"]), ""),
            ("compensated", str(self.statuses["compensated"]), ""),
            ("stuck", str(self.statuses["stuck"]), ""),
            ("coordinators", str(self.coordinators), "saga coordinator processes on one log"),
            ("coordinator kills", str(self.kills), "SIGKILL, then a restart"),
            ("coordinator pauses", str(self.pauses),
             f"SIGSTOP past the {self.lease_s:g} s lease, then SIGCONT"),
            ("duplicates delivered", str(delivered), f"repeats of answered ones: {per_service}"),
            ("duplicates suppressed", str(delivered), "answered from the record: no handler ran"),
            ("effects applied twice", _figure(self.twice), ""),
            ("sagas lost", str(len(self.lost)), "not in the log, or not ended"),
            ("sagas taken over", _figure(taken),
             "claimed from another coordinator (killed, restarted or paused past its lease)"),
            # A coordinator reports its count with each lease renewal: the writes fenced since
            # the last renewal of one SIGKILLed or stopped are not in the log.
            ("stale writes fenced", _figure(self.fenced),
             "at least: refused by the epoch check (counts reported at lease renewals)"),
            ("sagas driven by two coordinators", _figure(driven),
             "two owners' decisions interleaved in one saga's log"),
            ("start retries", str(self.retried),
             f"{self.existing} found their saga created by the lost first try"),
            ("invariants", "FAILED" if self.failures else "hold", ""),
        ]  # fmt: skip
        # "<figure> <value>" first, so a line reads (and greps) as "sagas lost 0".
        return [f"{f'  {k} {v}':<42}  {note}".rstrip() for k, v, note in rows]


def _figure(value: int | None) -> str:
    return "?" if value is None else str(value)


async def run_soak(options: SoakOptions, root: Path, echo: Echo = click.echo) -> Figures:
    """Start everything, feed the sagas while killing and pausing coordinators, check, clean
    up."""
    world_module = load_from_checkout("services.world", root)
    run = uuid.uuid4().hex[:8]
    rng = random.Random(options.seed)
    world = soak_world(world_module, rng, options.sagas, run)
    folder = (options.folder / run).resolve()
    dbs = await prepare_databases(options.db_url, run)
    log = SqlSagaLog(dbs.log)
    groups = [Children(log_dir=folder / "logs", cwd=root) for _ in range(3)]
    coordinators, services, infra = groups  # stopped in this order
    lease_s = options.lease_s or DEFAULT_LEASE_MS / 1000
    figures = Figures(sagas=options.sagas, coordinators=options.coordinators, lease_s=lease_s)
    echo(
        f"soak {run}: {options.sagas} order sagas, {options.replicas} replicas per service,"
        f" {_plural(options.coordinators, 'coordinator')} (lease {lease_s:g} s),"
        f" {_schedule(options)}, seed {options.seed}"
    )
    echo(f"  saga log {redact(dbs.log)}; logs in {folder / 'logs'}")
    began = time.monotonic()
    try:
        await log.open()
        if (await log.find(SagaQuery(limit=1))).sagas:
            raise SoakError(f"the saga log {redact(dbs.log)} holds sagas: give a fresh one")
        await world_module.seed(world, dbs.services)
        nats_url = await _start_nats(infra, folder)
        await _start_services(services, options, nats_url, dbs)
        fleet = _fleet(coordinators, options, nats_url, dbs.log, rng)
        await fleet.start()
        echo(f"  running: nats {nats_url}, coordinator APIs {' '.join(fleet.urls)}")
        feed = Feed(
            urls=[f"{url}/api/definitions/order/sagas" for url in fleet.urls],
            log=log,
            window=options.in_flight,
        )
        settled = asyncio.Event()
        breaking = asyncio.create_task(
            fleet.disrupt(options.kill_every_s, options.pause_every_s, settled)
        )
        try:
            async with asyncio.timeout(options.timeout_s):
                await _feed_and_settle(feed, world.orders, breaking, echo, began, fleet)
        except TimeoutError:
            figures.failures.append(f"not every saga ended within {options.timeout_s:g} s")
        finally:
            settled.set()
            await breaking
        figures.kills, figures.pauses = fleet.kills, fleet.pauses
        figures.retried, figures.existing = feed.retried, feed.existing
        await coordinators.stop()
        statuses = await _statuses(log)
        await _audit(log, figures)
        await services.stop()  # each replica prints its count of repeated commands
        figures.replayed = _replayed(services)
        await _check(world_module, world, feed.started, statuses, dbs, figures)
    finally:
        figures.seconds = time.monotonic() - began
        for group in groups:
            await group.stop()
        await log.close()
        shutil.rmtree(folder / "nats", ignore_errors=True)
        if options.keep:
            echo(f"  kept the databases: log {redact(dbs.log)}, services beside it")
        else:
            await dbs.remove()
    return figures


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _schedule(options: SoakOptions) -> str:
    one = "the coordinator" if options.coordinators == 1 else "one"
    kills = (
        f"{one} SIGKILLed every ~{options.kill_every_s:g} s"
        if options.kill_every_s > 0
        else "no kills"
    )
    if options.pause_every_s <= 0:
        return kills
    return f"{kills}, {one} SIGSTOPped past its lease every ~{options.pause_every_s:g} s"


def _fleet(
    children: Children, options: SoakOptions, nats_url: str, log_url: str, rng: random.Random
) -> Fleet:
    """The coordinators ``coord-0`` .. ``coord-<N-1>``, each with its own HTTP port."""
    members = []
    for i in range(options.coordinators):
        url = f"http://127.0.0.1:{free_port()}"
        argv = [
            sys.executable, "-m", "saga", "coordinator", "--nats", nats_url, "--db", log_url,
            "--sagas", "examples.order_saga:ORDER_SAGA", "--http", url.removeprefix("http://"),
            "--name", f"coord-{i}", "--advertise-url", url,
        ]  # fmt: skip
        if options.lease_s is not None:
            argv += ["--lease", f"{options.lease_s:g}"]
        members.append(
            CoordinatorProcess(children, name=f"coord-{i}", argv=argv, url=url, env=_CLEAN_ENV)
        )
    lease_s = options.lease_s or DEFAULT_LEASE_MS / 1000
    return Fleet(coordinators=members, lease_s=lease_s, rng=rng)


async def _audit(log: SqlSagaLog, figures: Figures) -> None:
    """Take-overs and interleaved owners from the log's ownership records, and the writes
    fenced as every coordinator (restarted ones included) last reported them."""
    try:
        figures.audit = await log.ownership.audit()
        members = await log.ownership.members(include_ended_ms=EVERY_COORDINATOR_MS)
    except Exception as exc:
        figures.failures.append(f"could not read the ownership audit from the log: {exc}")
        return
    figures.fenced = sum(member.fenced_writes for member in members)
    if figures.audit.driven_by_two:
        figures.failures.append(
            f"{figures.audit.driven_by_two} sagas driven by two coordinators (decisions of an"
            " older owner recorded after a take-over)"
        )


async def _start_services(
    children: Children, options: SoakOptions, nats_url: str, dbs: SoakDatabases
) -> None:
    starting = []
    for service in SERVICES:
        for replica in range(options.replicas):
            argv = service_argv(
                service, nats_url, dbs.services[service], replica=replica, seed=False,
                flaky=options.flaky,
            )  # fmt: skip
            starting.append(await children.start(f"{service}-{replica}", argv, _CLEAN_ENV))
    await asyncio.gather(*(children.wait_ready(child) for child in starting))


async def _feed_and_settle(
    feed: Feed, orders: list[dict[str, Any]], killing: asyncio.Task[Any], echo: Echo,
    began: float, fleet: Fleet,
) -> None:  # fmt: skip
    progress = asyncio.create_task(_progress(feed, len(orders), fleet, echo, began))
    try:
        await _feed_then_wait(feed, orders, killing, echo, began)
    finally:
        progress.cancel()


async def _progress(feed: Feed, total: int, fleet: Fleet, echo: Echo, began: float) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        echo(
            f"  {time.monotonic() - began:.0f} s: {len(feed.started)} of {total} started,"
            f" ~{feed.unfinished} unfinished, {fleet.kills} coordinator kills,"
            f" {fleet.pauses} pauses"
        )


async def _feed_then_wait(
    feed: Feed, orders: list[dict[str, Any]], killing: asyncio.Task[Any], echo: Echo,
    began: float,
) -> None:  # fmt: skip
    feeding = asyncio.create_task(feed.run(orders))
    # A crash of the kill loop (a coordinator that will not start again) ends the soak at once.
    await asyncio.wait({feeding, killing}, return_when=asyncio.FIRST_COMPLETED)
    if killing.done():
        feeding.cancel()
        killing.result()
    await feeding
    echo(f"  all {len(feed.started)} started after {time.monotonic() - began:.0f} s; settling")
    while await _unfinished_or_none(feed) != 0:
        if killing.done():
            killing.result()
        await asyncio.sleep(0.5)
    echo(f"  all ended after {time.monotonic() - began:.0f} s")


async def _unfinished_or_none(feed: Feed) -> int | None:
    try:
        return await feed.count_unfinished()
    except Exception:
        return None


async def _statuses(log: SqlSagaLog) -> dict[str, SagaStatus]:
    return {record.saga_id: record.status for record in await log.find_all(SagaQuery(limit=1000))}


def _replayed(services: Children) -> dict[str, int | None]:
    """Repeated commands answered from the record, per service, from each replica's stop line
    (None when a replica did not print one)."""
    counts: dict[str, int | None] = {}
    for child in services.started:
        service = child.name.rsplit("-", 1)[0]
        found = REPLAYED.findall(child.output())
        total = counts.get(service, 0)
        counts[service] = None if not found or total is None else total + int(found[-1])
    return counts


async def _check(
    world_module: ModuleType, world: Any, started: list[str],
    statuses: dict[str, SagaStatus], dbs: SoakDatabases, figures: Figures,
) -> None:  # fmt: skip
    ended = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.STUCK)
    wanted = [order["order_id"] for order in world.orders]
    figures.lost = [i for i in wanted if statuses.get(i) not in ended]
    figures.statuses = Counter(statuses[i].value for i in wanted if i in statuses)
    if len(started) != len(wanted):
        figures.failures.append(f"only {len(started)} of {len(wanted)} sagas were started")
    if figures.lost:
        figures.failures.append(f"{len(figures.lost)} sagas lost, e.g. {figures.lost[:3]}")
    figures.twice = await world_module.effects_twice(dbs.services)
    if figures.twice:
        figures.failures.append(f"{figures.twice} effects applied twice")
    stuck = figures.statuses["stuck"]
    if stuck:
        figures.failures.append(f"{stuck} sagas stuck: the books wait for an operator")
    if figures.lost or stuck:
        return  # the books cannot balance with sagas unfinished
    completed = {i for i in wanted if statuses[i] is SagaStatus.COMPLETED}
    try:
        await world_module.check_invariants(world, completed, dbs.services)
    except AssertionError as exc:
        figures.failures.append(f"business invariant: {exc}")


async def _start_nats(infra: Children, folder: Path) -> str:
    port = free_port()
    argv = [nats_server_binary(), "--addr", "127.0.0.1", "--port", str(port), "--jetstream"]
    child = await infra.start("nats-server", [*argv, "--store_dir", str(folder / "nats")])
    await infra.wait_ready(child, marker=NATS_READY_MARK)
    return f"nats://127.0.0.1:{port}"


async def _main(options: SoakOptions, root: Path) -> Figures:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    return await run_soak(options, root)


_OPTIONS = [
    click.option("--sagas", type=click.IntRange(min=1), default=10_000, show_default=True,
                 help="How many order sagas to run."),
    click.option("--kill-every", "kill_every_s", type=click.FloatRange(min=0), default=3.0,
                 show_default=True,
                 help="SIGKILL a coordinator about this often, in seconds (0: never)."),
    click.option("--coordinators", type=click.IntRange(1, 16), default=1, show_default=True,
                 help="Coordinator processes sharing the saga log (more than 1: PostgreSQL)."),
    click.option("--pause-every", "pause_every_s", type=click.FloatRange(min=0), default=0.0,
                 show_default=True,
                 help="SIGSTOP a coordinator for 1.5 to 2 leases about this often, in seconds,"
                 " then SIGCONT it (0: never)."),
    click.option("--lease", "lease_s", type=click.FloatRange(min=0.5, max=3600), default=None,
                 metavar="SECONDS",
                 help="The coordinators' --lease.  [default: 2 with several coordinators,"
                 " else the coordinator's own default]"),
    # Not from SAGA_DB_URL: a soak creates and drops databases beside its log, so it runs
    # only where it is pointed explicitly, never at a log configured for something else.
    db_option(default=None, from_env=False,
              help_text="The saga log: postgresql://.../DB (the services' databases are created"
              " beside it, DB_<service>) or sqlite:///FILE.  [default: a fresh database on"
              f" the PostgreSQL server at ${POSTGRES_ENV}]"),
    click.option("--replicas", type=click.IntRange(1, 8), default=2, show_default=True,
                 help="Replicas of each service (they share a queue group)."),
    click.option("--seed", type=int, default=None,
                 help="Seed for the shop, the orders, the kill and pause times."
                 "  [default: random]"),
    click.option("--flaky", type=click.FloatRange(0.0, 1.0), default=0.3, show_default=True,
                 help="Probability that a shipping attempt fails transiently."),
    click.option("--in-flight", type=click.IntRange(min=1), default=200, show_default=True,
                 help="At most this many sagas unfinished at a time."),
    click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=None,
                 help="Give up after this many seconds.  [default: 600 + 0.5 per saga]"),
    click.option("--keep", is_flag=True, help="Keep the databases the soak created."),
    click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
                 default=Path(".saga/soak"), show_default=True,
                 help="Where each run's logs go (a folder per run)."),
]  # fmt: skip


def _soak_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def _is_sqlite(db_url: str | None) -> bool:
    return db_url is not None and urlsplit(db_url).scheme.lower().startswith("sqlite")


@click.command()
@_soak_options
def soak(**params: Any) -> None:
    """Run many order sagas while SIGKILLing and pausing coordinators, then check the books.

    With --coordinators N (PostgreSQL), N coordinators share the log; the ownership audit must
    show no saga driven by two of them."""
    if params["coordinators"] > 1 and _is_sqlite(params["db_url"]):
        raise SoakError(
            f"--coordinators {params['coordinators']} needs a PostgreSQL --db: SQLite allows"
            " one coordinator at a time"
        )
    try:
        root = find_checkout(Path.cwd(), "saga soak")
    except click.ClickException as exc:
        raise SoakError(exc.message) from None
    if params["lease_s"] is None and params["coordinators"] > 1:
        params["lease_s"] = SEVERAL_COORDINATORS_LEASE_S
    if params["seed"] is None:
        params["seed"] = random.randrange(1 << 31)
    if params["timeout_s"] is None:
        params["timeout_s"] = 600 + 0.5 * params["sagas"]
    options = SoakOptions(**params)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        figures = asyncio.run(_main(options, root))
    except asyncio.CancelledError:
        raise SystemExit("soak: interrupted; every process it started has been stopped") from None
    click.echo(f"soak figures ({when}, {figures.seconds:.0f} s, seed {options.seed}):")
    for line in figures.lines():
        click.echo(line)
    for failure in figures.failures:
        click.echo(f"FAILED: {failure}", err=True)
    if figures.failures:
        raise SystemExit(1)
    click.echo(
        "soak: every saga ended, nothing was lost, applied twice or driven by two coordinators,"
        " the books balance"
    )
