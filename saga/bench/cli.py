"""The ``saga bench`` command: options, the run, the table and the JSON line."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import signal
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from saga import eventloop
from saga.bench.cluster import lease_cost, throughput_across
from saga.bench.env import (
    BenchDb,
    BenchError,
    Echo,
    ParticipantOptions,
    commit_floor,
    environment,
    nats_floor,
    one_line,
    prepare_db,
)
from saga.bench.sagas import MAX_STEPS
from saga.bench.workloads import Workload, list_pages, recovery, throughput
from saga.errors import SagaError
from saga.redact import redact_url

WORKLOADS = ("throughput", "flow", "recovery", "list")
DEFAULT_SAGAS = 5_000
"""The default workload's size: about 10-25 s of sagas on a 2-core machine at today's rates,
so a bare ``saga bench`` (start-up and floors included) ends well within a minute while the
measured window is long enough for a stable p99."""
FLOW = {"sagas": 2_000, "in_flight": 2_000, "max_concurrency": 1, "delay_ms": 10.0}
"""The flow-control preset: every saga at once against one slow, serial participant."""
DEFAULT_RECOVERY_SAGAS = 10_000
DEFAULT_ROWS = 1_000_000


def _explain() -> list[tuple[str, str]]:
    return [
        ("steps_to_nats", "steps/s ÷ raw NATS request/reply rps at the same concurrency: the"
         " share of the broker's round-trip rate the coordinator reaches (each step is one"
         " request/reply)"),
        ("writes_to_commits", "log writes per saga x sagas/s ÷ raw single-row commits/s:"
         " above 1 means group commit puts several writes in one transaction"),
    ]  # fmt: skip


async def run_once(
    options: dict[str, Any], echo: Echo, coordinators: int | None = None
) -> dict[str, Any]:
    """One bench run: database, NATS, participant, floors, the workload; all removed after.
    With ``coordinators``, the workload runs on that many coordinator processes instead of
    one coordinator in this process."""
    workload = options["workload"]
    work: Workload = options["work"]
    folder = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    db: BenchDb | None = None
    figures: dict[str, Any] = {"workload": workload, **_parameters(options)}
    if coordinators is not None:
        figures["coordinators"] = coordinators
        figures.pop("memory_sagas", None)  # measured in this process only
    try:
        db = await prepare_db(options["db_url"], folder)
        figures["db"] = db.kind
        across = "" if coordinators is None else f" on {coordinators} coordinator process(es)"
        echo(f"saga bench: {workload}{across}; log {db.shown}")
        if workload == "list":
            listed: dict[str, Any] = await _safely(list_pages(options["rows"], db, echo))
            return figures | listed
        participant: ParticipantOptions = options["participant"]
        seconds = options["floor_seconds"]
        if workload == "recovery":
            participant = replace(participant, hold=True, tap=True,
                                  max_concurrency=max(participant.max_concurrency,
                                                      3 * work.sagas + 64))  # fmt: skip
        async with environment(options["nats_url"], participant, folder, echo) as env:
            figures["nats"] = "given" if options["nats_url"] else "embedded"
            if seconds > 0:
                echo(f"  floors: NATS request/reply x{work.in_flight}, then commits ({seconds:g} s"
                     " each)")  # fmt: skip
                figures["floor_nats_rps"] = await nats_floor(env, work.in_flight, seconds)
                figures["floor_commit_per_s"] = await _safely(commit_floor(db, seconds))
            if workload == "recovery":
                figures |= await _safely(recovery(work, env, db, echo))
            elif coordinators is not None:
                figures |= await _safely(throughput_across(
                    work, coordinators, env, db, echo, event_loop=options["event_loop"]
                ))  # fmt: skip
            else:
                figures |= await _safely(throughput(work, env, db, echo))
        if workload != "recovery" and seconds > 0:
            echo(f"  lease: renew + census + claim in a loop ({seconds:g} s)")
            figures |= await _safely(lease_cost(db, seconds))
        _ratios(figures)
        return figures
    finally:
        if db is not None:
            await db.remove()
        shutil.rmtree(folder, ignore_errors=True)


async def _safely(coro: Any) -> Any:
    try:
        return await coro
    except SagaError as exc:
        raise BenchError(one_line(exc)) from exc
    except OSError as exc:
        raise BenchError(one_line(exc)) from exc


def _ratios(figures: dict[str, Any]) -> None:
    nats = figures.get("floor_nats_rps")
    commits = figures.get("floor_commit_per_s")
    steps = figures.get("steps_per_s")
    if nats and steps is not None:
        figures["ratio_steps_to_nats"] = steps / nats
    writes, sagas = figures.get("log_writes_per_saga"), figures.get("sagas_per_s")
    if commits and writes is not None and sagas is not None:
        figures["ratio_writes_to_commits"] = writes * sagas / commits


def _parameters(options: dict[str, Any]) -> dict[str, Any]:
    work: Workload = options["work"]
    participant: ParticipantOptions = options["participant"]
    found = {k: v for k, v in asdict(work).items() if k not in ("timeout_s",)}
    found |= {k: v for k, v in asdict(participant).items() if k not in ("hold", "tap")}
    if options["workload"] == "list":
        found = {"rows": options["rows"]}
    elif options["workload"] == "recovery":
        # Every saga is in flight at once, and the participant takes them all.
        for key in ("in_flight", "memory_sagas", "max_concurrency"):
            found.pop(key, None)
    return found


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's fields, each number replaced by its median over ``runs``."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
            # Counts stay whole: the lower median is one of the runs' own values.
            whole = all(isinstance(v, int) for v in values)
            merged[key] = statistics.median_low(values) if whole else statistics.median(values)
    each: list[list[dict[str, Any]]] = [r.get("per_coordinator") or [] for r in runs]
    if each[0] and all(len(e) == len(each[0]) for e in each):
        # Coordinator k's figures: the median of coordinator k's over the runs.
        merged["per_coordinator"] = [
            {k: v for k, v in medians([e[i] for e in each]).items() if k != "repeat"}
            for i in range(len(each[0]))
        ]
    merged["repeat"] = len(runs)
    return merged


# -- output -----------------------------------------------------------------------------------

_ROWS: list[tuple[str, str, str]] = [
    # key, label, format
    ("sagas_per_s", "sagas/s", "{:,.0f}"),
    ("steps_per_s", "steps/s (replies)", "{:,.0f}"),
    ("p50_ms", "saga latency p50 ms", "{:,.1f}"),
    ("p95_ms", "saga latency p95 ms", "{:,.1f}"),
    ("p99_ms", "saga latency p99 ms", "{:,.1f}"),
    ("cpu_us_per_saga", "CPU µs per saga *", "{:,.0f}"),
    ("mem_bytes_per_saga", "memory per in-flight saga", "{:,.0f} B"),
    ("log_writes_per_saga", "log writes per saga", "{:.2f}"),
    ("spread", "spread: fewest ÷ most replies", "{:.2f}"),
    ("claimed", "sagas claimed by another", "{:,}"),
    ("released", "sagas handed back for balance", "{:,}"),
    ("fenced_writes", "writes fenced", "{:,}"),
    ("leases_lost", "leases lost", "{:,}"),
    ("refused", "starts refused", "{:,}"),
    ("completed", "completed", "{:,}"),
    ("compensated", "compensated", "{:,}"),
    ("stuck", "stuck", "{:,}"),
    ("unfinished", "not ended", "{:,}"),
    ("step_timeouts", "step timeouts", "{:,}"),
    ("compensations", "compensations run", "{:,}"),
    ("recovery_first_send_s", "first start: all commands sent s", "{:.2f}"),
    ("recovery_resend_s", "restart → all re-sent s", "{:.2f}"),
    ("recovery_end_s", "released → all ended s", "{:.2f}"),
    ("resent", "sagas whose command was re-sent", "{:,}"),
    ("fill_rows_per_s", "bulk insert rows/s", "{:,.0f}"),
    ("list_newest_ms", "one page, newest 100 ms", "{:.2f}"),
    ("list_by_status_ms", "one page, status filter ms", "{:.2f}"),
    ("list_by_name_ms", "one page, name filter ms", "{:.2f}"),
    ("list_tenth_page_ms", "10th page (cursor) ms", "{:.2f}"),
    ("floor_nats_rps", "floor: NATS request/reply rps", "{:,.0f}"),
    ("floor_commit_per_s", "floor: single-row commits/s", "{:,.0f}"),
    ("ratio_steps_to_nats", "ratio steps/s ÷ NATS rps", "{:.3f}"),
    ("ratio_writes_to_commits", "ratio writes/s ÷ commits/s", "{:.2f}"),
    ("lease_tick_us", "lease tick µs (renew+census+claim)", "{:,.0f}"),
    ("lease_cpu_us", "lease tick CPU µs, coordinator", "{:,.0f}"),
    ("lease_db_cpu_us", "lease tick CPU µs, PostgreSQL", "{:,.0f}"),
    ("lease_core_share", "lease: share of one core **", "{:.3%}"),
]

SHARED_CORES = (
    "on this machine ({cpus} CPUs) the coordinators share its cores with PostgreSQL,"
    " nats-server, the participant process and the bench's load generator: more"
    " coordinators add no cores, so these figures show the cost of sharing the work,"
    " not how it scales on machines of their own"
)
"""The note printed under every figure measured with ``--coordinators``."""


def _lease_note(figures: dict[str, Any]) -> str:
    interval = figures.get("lease_interval_s", 2.5)
    return (
        f"  ** per coordinator, renewing every {interval:g} s (the default lease 10 s ÷ 4):"
        " its CPU and PostgreSQL's for one renew, census and empty claim, ÷ the interval;"
        f" wall {figures['lease_tick_us']:,.0f} µs a tick (renew"
        f" {figures['lease_renew_us']:,.0f}, census {figures['lease_census_us']:,.0f},"
        f" claim {figures['lease_claim_us']:,.0f}), median of {figures['lease_ticks']:,}"
    )


def table(figures: dict[str, Any]) -> list[str]:
    params = ", ".join(
        f"{k}={figures[k]}" for k in ("coordinators", "steps", "sagas", "in_flight",
                                       "reject_step", "reject_rate",
                                       "replicas", "max_concurrency", "delay_ms", "rows", "db",
                                       "nats", "repeat", "event_loop") if k in figures
    )  # fmt: skip
    lines = [f"saga bench {figures['workload']} ({params}) on {platform.node() or '?'},"
             f" {os.cpu_count()} CPUs"]  # fmt: skip
    for key, label, form in _ROWS:
        value = figures.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        lines.append(f"  {label:<36} {form.format(value):>14}")
    if "cpu_us_per_saga" in figures and "coordinators" in figures:
        lines.append("  * CPU of the coordinator processes over the measured window, all of"
                     " them, over the sagas")  # fmt: skip
    elif "cpu_us_per_saga" in figures:
        lines.append("  * CPU of the bench process over the measured window: the coordinator"
                     " and the load generator")  # fmt: skip
    if "lease_tick_us" in figures:
        lines.append(_lease_note(figures))
    for key, text in _explain():
        if f"ratio_{key}" in figures:
            lines.append(f"  ratio {key}: {text}")
    for each in figures.get("per_coordinator", []):
        lines.append(
            f"  {each['name']}: {each['started']:,} started here, {each['ended_here']:,} ended"
            f" here ({each['sagas_per_s']:,.0f}/s), {each['replies']:,} replies; p50"
            f" {each['p50_ms']:,.1f} / p99 {each['p99_ms']:,.1f} ms; CPU"
            f" {each['cpu_share']:.0%} of a core; claimed {each['claimed']:,}, handed back"
            f" {each['released']:,}"
        )
    if "coordinators" in figures:
        lines.append(f"  note: {SHARED_CORES.format(cpus=os.cpu_count())}")
    return lines


_ACROSS: list[tuple[str, str, str]] = [
    # header, key, format (right-aligned in a column as wide as the header or the values)
    ("coordinators", "coordinators", "{}"),
    ("sagas/s", "sagas_per_s", "{:,.0f}"),
    ("÷ N=1", "ratio_to_one", "{:.2f}"),
    ("per coordinator sagas/s", "per_coordinator_sagas_per_s", "{}"),
    ("p50 ms", "p50_ms", "{:,.1f}"),
    ("p99 ms", "p99_ms", "{:,.1f}"),
    ("spread", "spread", "{:.2f}"),
    ("CPU µs/saga", "cpu_us_per_saga", "{:,.0f}"),
    ("claimed/handed back", "moved", "{}"),
    ("not ended", "unfinished", "{:,}"),
    ("stuck", "stuck", "{:,}"),
]


def across(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the ``--coordinators N,M,...`` table: each run's figures, with its ratio
    to the run on one coordinator (when there is one) and the per-coordinator rates."""
    one = next((r["sagas_per_s"] for r in runs if r.get("coordinators") == 1), None)
    rows = []
    for run in runs:
        row = dict(run)
        row["ratio_to_one"] = run["sagas_per_s"] / one if one else None
        row["per_coordinator_sagas_per_s"] = " / ".join(
            f"{c['sagas_per_s']:,.0f}" for c in run.get("per_coordinator", [])
        )
        row["moved"] = f"{run.get('claimed', 0):,}/{run.get('released', 0):,}"
        rows.append(row)
    return rows


def across_table(runs: list[dict[str, Any]]) -> list[str]:
    """One table with a row per number of coordinators, the lease's cost and the note."""
    first = runs[0]
    params = ", ".join(
        f"{k}={first[k]}" for k in ("steps", "sagas", "in_flight", "reject_step", "reject_rate",
                                     "replicas", "max_concurrency", "delay_ms", "db", "nats",
                                     "repeat", "event_loop") if k in first
    )  # fmt: skip
    lines = [f"saga bench {first['workload']} across coordinator processes ({params}) on"
             f" {platform.node() or '?'}, {os.cpu_count()} CPUs"]  # fmt: skip
    rows = across(runs)
    cells = [[_cell(form, row.get(key)) for _, key, form in _ACROSS] for row in rows]
    widths = [max(len(head), *(len(c[i]) for c in cells)) for i, (head, _, _) in
              enumerate(_ACROSS)]  # fmt: skip
    lines.append("  " + "  ".join(h.rjust(w) for (h, _, _), w in zip(_ACROSS, widths, strict=True)))
    for row_cells in cells:
        lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(row_cells, widths, strict=True)))
    lines.append("  spread: the fewest replies any coordinator recorded ÷ the most (1.00: even);"
                 " CPU: all coordinator processes' over the sagas; claimed/handed back: sagas"
                 " that changed coordinator while they ran (balance)")  # fmt: skip
    for run in runs:
        if "lease_tick_us" in run:
            db_cpu = run.get("lease_db_cpu_us")
            server = f" + {db_cpu:,.0f} µs PostgreSQL" if db_cpu is not None else ""
            lines.append(
                f"  lease renewal with {run['coordinators']}: {run['lease_cpu_us']:,.0f} µs CPU"
                f" coordinator{server} per tick ({run['lease_tick_us']:,.0f} µs wall: renew,"
                f" census, empty claim); every {run['lease_interval_s']:g} s that is"
                f" {run['lease_core_share']:.3%} of one core per coordinator"
            )
    lines.append(f"  note: {SHARED_CORES.format(cpus=os.cpu_count())}")
    return lines


def _cell(form: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return form.format(value)


# -- the command ------------------------------------------------------------------------------


def _main(runner: Callable[[], Any], *, uvloop: bool) -> Any:
    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await runner()

    return eventloop.run(main(), uvloop=uvloop)


class _OneLineUsageError(click.UsageError):
    """A bad flag, said in one line (no usage block)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"saga bench: error: {self.format_message()}", err=True, file=file)


class _BenchCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _OneLineUsageError(exc.format_message(), exc.ctx) from None


@click.command(cls=_BenchCommand)
@click.option(
    "--workload",
    type=click.Choice(WORKLOADS),
    default="throughput",
    show_default=True,
    help="throughput: sagas through an in-process coordinator; flow: 2,000 at once"
    " against one serial 10 ms participant; recovery: N in flight, the coordinator"
    " SIGKILLed and restarted; list: one page of a log of --rows sagas.",
)
@click.option(
    "--steps",
    type=click.IntRange(1, MAX_STEPS),
    default=3,
    show_default=True,
    help="Steps per saga (trivial handlers).",
)
@click.option(
    "--sagas",
    type=click.IntRange(min=1),
    default=None,
    help=f"Sagas to run.  [default: {DEFAULT_SAGAS:,}; recovery"
    f" {DEFAULT_RECOVERY_SAGAS:,}; flow {FLOW['sagas']:,}]",
)
@click.option(
    "--in-flight",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many sagas unfinished at a time (1: one saga at a time, for"
    " latency); also the NATS floor's concurrency.  [default: 256]",
)
@click.option(
    "--reject-step",
    type=click.IntRange(min=0, max=MAX_STEPS),
    default=0,
    help="The participant rejects this step (1-based) of a --reject-rate share of"
    " the sagas, which are then compensated.",
)
@click.option("--reject-last", is_flag=True, help="Reject the last step (= --reject-step STEPS).")
@click.option(
    "--reject-rate",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Share of sagas rejected at --reject-step (the last step if none given)."
    "  [default: 1 with --reject-step or --reject-last, else 0]",
)
@click.option(
    "--coordinators",
    default=None,
    metavar="N|N,M,...",
    callback=lambda ctx, param, value: _coordinator_counts(value),
    help="Run the sagas on N coordinator processes on one PostgreSQL log, starts sent round"
    " robin (N > 1 needs --db postgresql://...); several counts run one after the other into"
    " one table.  [default: one coordinator inside the bench process]",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="sqlite:///NEW_FILE, or postgresql://USER@HOST/DB (a fresh database is"
    " made on that server and dropped after).  [default: a SQLite file in a temp"
    " dir, WAL, synchronous=FULL]",
)
@click.option(
    "--nats",
    "nats_url",
    default=None,
    metavar="URL",
    help="Use this NATS server.  [default: an embedded nats-server from the wheel]",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 32),
    default=1,
    show_default=True,
    help="Participant instances in the participant process (one queue group).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Commands each participant replica runs at once.  [default: 64]",
)
@click.option(
    "--delay-ms",
    type=click.FloatRange(min=0),
    default=None,
    help="Time each participant command takes.  [default: 0]",
)
@click.option(
    "--slow-after",
    type=click.IntRange(min=0),
    default=0,
    help="After this many forward commands the participant slows to --slow-delay-ms (0: never).",
)
@click.option(
    "--slow-delay-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Time each forward command takes after --slow-after.",
)
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=DEFAULT_ROWS,
    show_default=True,
    help="list: sagas in the log.",
)
@click.option(
    "--memory-sagas",
    type=click.IntRange(min=0),
    default=1_000,
    show_default=True,
    help="Sagas held in flight to measure memory per saga (0: skip).",
)
@click.option(
    "--floor-seconds",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="How long each floor loop runs (0: skip the floors).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run this many times and report the medians.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="For --reject-rate.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Give up on the sagas after this many seconds.",
)
@click.option(
    "--event-loop",
    "event_loop",
    type=click.Choice(["auto", "asyncio"]),
    default="auto",
    show_default=True,
    help="auto: uvloop when it is installed (as saga coordinator runs), else asyncio's.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Also print the figures as one JSON object on the last line of stdout.",
)
def bench(**params: Any) -> None:  # fmt: skip
    """Run a saga workload through a real coordinator, NATS and log, and print its figures
    beside the floors (raw NATS request/reply, raw commits) measured in the same run."""
    try:
        options = _options(params)
    except click.UsageError as exc:
        raise _OneLineUsageError(exc.format_message(), exc.ctx) from None
    repeat = params["repeat"]
    counts: list[int | None] = list(options["coordinators"] or [None])

    def echo(line: str) -> None:
        click.echo(line, err=True)

    async def runner() -> list[list[dict[str, Any]]]:
        found = []
        for n in counts:
            runs = []
            for i in range(repeat):
                if repeat > 1:
                    echo(f"saga bench: run {i + 1} of {repeat}")
                runs.append(await run_once(options, echo, n))
            found.append(runs)
        return found

    try:
        uvloop = params["event_loop"] == "auto"
        every = _main(runner, uvloop=uvloop)
    except asyncio.CancelledError:
        raise SystemExit("saga bench: interrupted; every process it started is stopped") from None
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    results = [medians(runs) if repeat > 1 else runs[0] for runs in every]
    for figures in results:
        figures["event_loop"] = eventloop.name(uvloop=uvloop)
    if len(results) > 1:
        for line in across_table(results):
            click.echo(line)
        if params["as_json"]:
            click.echo(json.dumps(_plain({
                "workload": results[0]["workload"], "coordinators": counts,
                "runs": [_jsonable(r) | {"ratio_to_one": row["ratio_to_one"]}
                         for r, row in zip(results, across(results), strict=True)],
                "note": SHARED_CORES.format(cpus=os.cpu_count()),
            }), sort_keys=True))  # fmt: skip
        return
    figures = results[0]
    for line in table(figures):
        click.echo(line)
    if params["as_json"]:
        click.echo(json.dumps(_jsonable(figures), sort_keys=True))


def _plain(value: Any) -> Any:
    """JSON's values: NaN as null, at any depth."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _jsonable(figures: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: _plain(value) for key, value in figures.items()}
    for key in ("sagas_per_s", "steps_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_us_per_saga",
                "floor_nats_rps", "floor_commit_per_s", "mem_bytes_per_saga"):  # fmt: skip
        out.setdefault(key, None)
    return out


MAX_COORDINATORS = 8


def _coordinator_counts(value: str | None) -> tuple[int, ...] | None:
    """``--coordinators``: one count or several, comma-separated, each 1 to 8."""
    if value is None:
        return None
    counts: list[int] = []
    for part in value.split(","):
        try:
            count = int(part.strip())
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_COORDINATORS:
            raise click.BadParameter(
                f"{value!r}: expected whole numbers 1 to {MAX_COORDINATORS}, such as 1,2,3",
                param_hint="--coordinators",
            )
        if count not in counts:
            counts.append(count)
    return tuple(counts)


def _check_coordinators(counts: tuple[int, ...] | None, workload: str, db_url: str | None) -> None:
    if counts is None:
        return
    if workload not in ("throughput", "flow"):
        raise click.BadParameter(f"runs the throughput and flow workloads, not {workload}",
                                 param_hint="--coordinators")  # fmt: skip
    several = max(counts)
    postgres = db_url is not None and urlsplit(db_url).scheme.lower().startswith("postgres")
    if several > 1 and not postgres:
        raise click.BadParameter(
            f"{several} coordinators need PostgreSQL (--db postgresql://USER@HOST/DB):"
            " a SQLite log allows one coordinator at a time",
            param_hint="--coordinators",
        )


def _options(params: dict[str, Any]) -> dict[str, Any]:
    workload = params["workload"]
    steps = params["steps"]
    reject_step = steps if params["reject_last"] else params["reject_step"]
    if reject_step > steps:
        raise click.BadParameter(f"{reject_step} is past the last step ({steps})",
                                 param_hint="--reject-step")  # fmt: skip
    rate = params["reject_rate"]
    if rate is None:
        rate = 1.0 if reject_step else 0.0
    elif not reject_step:
        reject_step = steps
    preset = FLOW if workload == "flow" else {}
    default_sagas = DEFAULT_RECOVERY_SAGAS if workload == "recovery" else DEFAULT_SAGAS
    sagas = params["sagas"] or int(preset.get("sagas", default_sagas))
    in_flight = params["in_flight"] or int(preset.get("in_flight", 256))
    if params["db_url"] and params["db_url"].startswith(("http:", "https:")):
        raise click.BadParameter(f"{redact_url(params['db_url'])!r}", param_hint="--db")
    _check_coordinators(params["coordinators"], workload, params["db_url"])
    work = Workload(
        steps=steps, sagas=sagas, in_flight=in_flight, reject_step=reject_step,
        reject_rate=rate, seed=params["seed"],
        memory_sagas=0 if workload == "recovery" else params["memory_sagas"],
        timeout_s=params["timeout_s"],
    )  # fmt: skip
    participant = ParticipantOptions(
        replicas=params["replicas"],
        max_concurrency=params["max_concurrency"] or int(preset.get("max_concurrency", 64)),
        delay_ms=params["delay_ms"] if params["delay_ms"] is not None
        else float(preset.get("delay_ms", 0.0)),
        slow_after=params["slow_after"], slow_delay_ms=params["slow_delay_ms"],
    )  # fmt: skip
    return {"workload": workload, "work": work, "participant": participant,
            "db_url": params["db_url"], "nats_url": params["nats_url"], "rows": params["rows"],
            "floor_seconds": params["floor_seconds"], "coordinators": params["coordinators"],
            "event_loop": params["event_loop"]}  # fmt: skip
