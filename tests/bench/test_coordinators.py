"""``saga bench --coordinators``: the workload on N coordinator processes sharing one log, the
table across several N, and the lease renewal's cost. Tiny runs; structure and sanity only,
never speed."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest

from saga.bench.cli import across, across_table, medians
from tests.bench.test_bench import TAG, assert_no_leftovers, bench, tagged_pids

pytestmark = pytest.mark.nats

POSTGRES_ENV = "SAGA_TEST_POSTGRES_URL"
TINY = ["--sagas", "40", "--in-flight", "8", "--floor-seconds", "0.3"]
LEASE_FIELDS = (
    "lease_tick_us", "lease_renew_us", "lease_census_us", "lease_claim_us", "lease_cpu_us",
    "lease_core_share",
)  # fmt: skip


def postgres_server() -> str:
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        if os.environ.get("SAGA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but {POSTGRES_ENV} is not set")
        pytest.skip(f"needs {POSTGRES_ENV}")
    return server


def run(*args: str) -> tuple[dict[str, Any], str]:
    """The bench's JSON line and its stdout, after checking it exited 0 and left nothing."""
    done, tag = bench(*args, "--json", timeout_s=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_no_leftovers(tag)
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found, done.stdout


async def _bench_databases(server: str) -> set[str]:
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'saga_bench_%'")
        return {row["datname"] for row in rows}
    finally:
        await conn.close()


def assert_sane_lease(found: dict[str, Any], *, postgres: bool) -> None:
    for key in LEASE_FIELDS:
        assert isinstance(found[key], int | float), key
        assert found[key] > 0, key
    assert found["lease_ticks"] >= 1
    assert found["lease_claimed"] == 0  # every saga of the run had ended: nothing to claim
    assert found["lease_interval_s"] == 2.5
    assert found["lease_core_share"] < 1
    assert found["lease_tick_us"] >= found["lease_renew_us"]
    if postgres:
        # The server's CPU is read from /proc: PostgreSQL runs on this machine in the tests.
        assert found["lease_db_cpu_us"] is not None
        assert found["lease_db_cpu_us"] >= 0
    else:
        assert found["lease_db_cpu_us"] is None


def assert_every_saga_ended(found: dict[str, Any], n: int, sagas: int) -> None:
    assert found["coordinators"] == n
    assert (found["completed"], found["unfinished"], found["stuck"]) == (sagas, 0, 0)
    assert found["refused"] == 0
    assert found["fenced_writes"] == 0
    assert found["leases_lost"] == 0
    per = found["per_coordinator"]
    assert [c["name"] for c in per] == [f"bench-{k}" for k in range(1, n + 1)]
    # Round robin: each coordinator started its share, and each saga ended on exactly one.
    assert sorted(c["started"] for c in per) == sorted(
        sagas // n + (1 if k < sagas % n else 0) for k in range(n)
    )
    assert sum(c["ended_here"] for c in per) == sagas
    assert sum(c["replies"] for c in per) == 3 * sagas
    assert 0 < found["spread"] <= 1
    assert found["p50_ms"] <= found["p99_ms"]
    assert found["sagas_per_s"] > 0
    assert found["cpu_us_per_saga"] > 0
    assert found["mem_bytes_per_saga"] is None  # measured only with the in-process coordinator


def test_several_coordinators_on_sqlite_is_one_line() -> None:
    for args in (
        ["--coordinators", "2"],
        ["--coordinators", "1,3", "--db", "sqlite:////tmp/never-made.db"],
    ):
        done, tag = bench(*args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0, done.stderr
        assert "need PostgreSQL" in done.stderr
        assert "Traceback" not in done.stderr
        assert_no_leftovers(tag)


def test_bad_coordinator_counts_and_workloads_are_one_line() -> None:
    for args in (
        ["--coordinators", "0"],
        ["--coordinators", "two"],
        ["--coordinators", "1,9"],
        ["--coordinators", "1", "--workload", "recovery"],
        ["--coordinators", "1", "--workload", "list"],
    ):
        done, _ = bench(*args)
        assert (done.returncode, done.stderr.strip().count("\n")) == (2, 0), (args, done.stderr)
        assert "--coordinators" in done.stderr


def test_one_coordinator_process_on_sqlite_runs_and_measures_the_lease() -> None:
    found, out = run("--coordinators", "1", *TINY)
    assert found["db"] == "sqlite"
    assert_every_saga_ended(found, 1, 40)
    assert found["spread"] == 1.0
    assert_sane_lease(found, postgres=False)
    assert "bench-1: 40 started here" in out
    assert "share its cores with PostgreSQL" in out


def test_the_in_process_bench_reports_the_lease_too() -> None:
    found, out = run(*TINY, "--memory-sagas", "10")
    assert "coordinators" not in found
    assert_sane_lease(found, postgres=False)
    assert "lease: share of one core" in out


@pytest.mark.postgres
def test_two_coordinators_share_the_sagas_of_one_postgresql_database() -> None:
    server = postgres_server()
    before = asyncio.run(_bench_databases(server))
    found, out = run("--coordinators", "2", "--db", server, *TINY)
    assert found["db"] == "postgresql"
    assert_every_saga_ended(found, 2, 40)
    assert_sane_lease(found, postgres=True)
    assert all(c["ended_here"] > 0 for c in found["per_coordinator"])
    for name in ("bench-1", "bench-2"):
        assert f"{name}: 20 started here" in out
    assert "share its cores with PostgreSQL" in out
    assert asyncio.run(_bench_databases(server)) == before


@pytest.mark.postgres
def test_a_list_of_counts_prints_one_table_with_a_row_each() -> None:
    server = postgres_server()
    found, out = run("--coordinators", "1,3", "--db", server, *TINY)
    assert found["coordinators"] == [1, 3]
    assert "share its cores with PostgreSQL" in found["note"]
    one, three = found["runs"]
    assert_every_saga_ended(one, 1, 40)
    assert_every_saga_ended(three, 3, 40)
    assert one["ratio_to_one"] == 1.0
    assert three["ratio_to_one"] == pytest.approx(three["sagas_per_s"] / one["sagas_per_s"])
    for each in (one, three):
        assert_sane_lease(each, postgres=True)
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["coordinators"])
    assert [lines[header + 1].split()[0], lines[header + 2].split()[0]] == ["1", "3"]
    assert sum("lease renewal with" in line for line in lines) == 2
    assert lines[-2].lstrip().startswith("note: on this machine")


def _figures(n: int, rate: float, **extra: Any) -> dict[str, Any]:
    per = [{"sagas_per_s": rate / n, "name": f"bench-{k + 1}"} for k in range(n)]
    return {"workload": "throughput", "coordinators": n, "sagas_per_s": rate,
            "p50_ms": 10.0, "p99_ms": 20.0, "spread": 1.0, "cpu_us_per_saga": 900.0,
            "claimed": 0, "released": 0, "unfinished": 0, "stuck": 0, "per_coordinator": per,
            **extra}  # fmt: skip


def test_across_ratios_to_one_coordinator_and_the_table() -> None:
    rows = across([_figures(1, 400.0), _figures(2, 600.0, claimed=5, released=4)])
    assert [r["ratio_to_one"] for r in rows] == [1.0, 1.5]
    assert rows[1]["per_coordinator_sagas_per_s"] == "300 / 300"
    assert rows[1]["moved"] == "5/4"
    # Without a run on one coordinator there is nothing to compare to.
    assert across([_figures(2, 600.0)])[0]["ratio_to_one"] is None
    lines = across_table([_figures(2, 600.0, spread=math.nan), _figures(3, 500.0)])
    assert lines[2].split()[:3] == ["2", "600", "-"]  # no ratio; NaN spread shown as "-"
    assert lines[-1].lstrip().startswith("note:")


def test_repeated_runs_take_each_coordinators_median() -> None:
    runs = [
        _figures(2, rate, per_coordinator=[{"name": "bench-1", "sagas_per_s": a},
                                           {"name": "bench-2", "sagas_per_s": b}])
        for rate, a, b in ((600.0, 290.0, 310.0), (500.0, 260.0, 240.0), (700.0, 330.0, 370.0))
    ]  # fmt: skip
    merged = medians(runs)
    assert merged["sagas_per_s"] == 600.0
    assert merged["per_coordinator"] == [
        {"name": "bench-1", "sagas_per_s": 290.0},
        {"name": "bench-2", "sagas_per_s": 310.0},
    ]


def test_ctrl_c_stops_the_coordinator_processes_too() -> None:
    tag = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, "-m", "saga", "bench", "--coordinators", "1", "--sagas", "1000000",
         "--in-flight", "16", "--floor-seconds", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, TAG: tag},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "sagas ended" in line:  # the first progress line: the workload runs
                break
        # The bench, nats-server, the participant and the coordinator process.
        assert len(tagged_pids(tag)) >= 4
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert "interrupted" in err
    assert "Traceback" not in err
    assert_no_leftovers(tag)
