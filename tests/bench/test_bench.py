"""``saga bench`` end to end, at tiny scale: real subprocesses, nats-server, SQLite and PG.

Each run is ``python -m saga bench ... --json`` with a tag in its environment, which every
process it starts inherits: after it exits, no process may still carry the tag.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from saga.bench.cli import medians
from saga.bench.workloads import percentile

pytestmark = pytest.mark.nats

POSTGRES_ENV = "SAGA_TEST_POSTGRES_URL"
TAG = "SAGA_BENCH_TEST_TAG"
TINY = ["--sagas", "30", "--in-flight", "8", "--memory-sagas", "20", "--floor-seconds", "0.3"]
FIELDS = (
    "sagas_per_s", "steps_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_us_per_saga",
    "floor_nats_rps", "floor_commit_per_s", "mem_bytes_per_saga",
)  # fmt: skip


def tagged_pids(tag: str) -> list[int]:
    """Processes whose environment holds ``TAG=tag``."""
    found = []
    needle = f"{TAG}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def assert_no_leftovers(tag: str) -> None:
    deadline = time.monotonic() + 10
    while (left := tagged_pids(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes the bench started are still running: {left}"


def bench(*args: str, timeout_s: float = 180) -> tuple[subprocess.CompletedProcess[str], str]:
    tag = uuid.uuid4().hex
    done = subprocess.run(
        [sys.executable, "-m", "saga", "bench", *args], capture_output=True, text=True,
        timeout=timeout_s, env={**os.environ, TAG: tag},
    )  # fmt: skip
    return done, tag


def figures(*args: str) -> dict[str, Any]:
    done, tag = bench(*args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_no_leftovers(tag)
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_throughput_completes_every_saga_and_reports_each_figure() -> None:
    found = figures(*TINY)
    for field in FIELDS:
        assert isinstance(found[field], int | float), field
        assert found[field] > 0, field
    assert found["p50_ms"] <= found["p95_ms"] <= found["p99_ms"]
    assert (found["completed"], found["compensated"], found["stuck"]) == (30, 0, 0)
    assert found["unfinished"] == 0
    assert found["compensations"] == 0
    assert found["log_writes_per_saga"] > 1
    assert found["ratio_steps_to_nats"] == pytest.approx(
        found["steps_per_s"] / found["floor_nats_rps"]
    )
    assert (found["workload"], found["steps"], found["sagas"], found["in_flight"]) == (
        "throughput", 3, 30, 8,
    )  # fmt: skip


def test_reject_last_compensates_every_saga_twice() -> None:
    found = figures(*TINY, "--reject-last", "--replicas", "2")
    assert (found["completed"], found["compensated"], found["stuck"]) == (0, 30, 0)
    # Three steps, the third rejected: the first two are compensated.
    assert found["compensations"] == 60
    assert found["reject_step"] == 3
    assert found["replicas"] == 2


@pytest.mark.postgres
def test_postgresql_runs_on_a_fresh_database_and_drops_it() -> None:
    import asyncio

    import asyncpg

    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"needs {POSTGRES_ENV}")

    async def bench_databases() -> set[str]:
        conn = await asyncpg.connect(server)
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'saga_bench_%'"
            )
            return {row["datname"] for row in rows}
        finally:
            await conn.close()

    before = asyncio.run(bench_databases())
    found = figures(*TINY, "--db", server)
    assert found["db"] == "postgresql"
    assert (found["completed"], found["unfinished"]) == (30, 0)
    assert found["floor_commit_per_s"] > 0
    assert asyncio.run(bench_databases()) == before


def test_recovery_resends_every_command_after_a_sigkill_and_ends_every_saga() -> None:
    found = figures("--workload", "recovery", "--sagas", "50", "--floor-seconds", "0.2")
    assert found["resent"] == 50
    assert (found["completed"], found["unfinished"], found["stuck"]) == (50, 0, 0)
    assert 0 < found["recovery_resend_s"] < found["recovery_total_s"]
    assert found["recovery_end_s"] > 0


def test_list_times_pages_of_a_filled_log() -> None:
    found = figures("--workload", "list", "--rows", "300")
    assert found["rows"] == 300
    for key in ("list_newest_ms", "list_by_status_ms", "list_by_name_ms", "list_tenth_page_ms"):
        assert found[key] > 0, key


def test_a_bad_flag_is_one_line_and_exit_code_2() -> None:
    done, _ = bench("--in-flight", "0")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "--in-flight" in done.stderr
    done, _ = bench("--reject-step", "4", "--steps", "3")
    assert (done.returncode, done.stderr.strip().count("\n")) == (2, 0), done.stderr


def test_an_unreachable_database_or_nats_is_one_line() -> None:
    done, tag = bench("--db", "postgresql://postgres@127.0.0.1:1/postgres")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: cannot create a database")
    done, tag = bench("--nats", "nats://127.0.0.1:1", "--floor-seconds", "0")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "127.0.0.1:1" in line] == [
        done.stderr.strip().splitlines()[-1]
    ]
    assert_no_leftovers(tag)


def test_ctrl_c_stops_every_process_it_started() -> None:
    tag = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, "-m", "saga", "bench", "--sagas", "1000000", "--in-flight", "16",
         "--floor-seconds", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, TAG: tag},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "sagas ended" in line:  # the first progress line: the workload runs
                break
        assert len(tagged_pids(tag)) >= 3  # the bench, nats-server, the participant
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


def test_percentile_and_medians() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0, 99.0, 100.0,
    )  # fmt: skip
    merged = medians([{"a": 1.0, "w": "x"}, {"a": 5.0, "w": "x"}, {"a": 2.0, "w": "x"}])
    assert merged == {"a": 2.0, "w": "x", "repeat": 3}
    assert medians([{"n": 3, "a": 1.0}, {"n": 4, "a": 2.0}]) == {"n": 3, "a": 1.5, "repeat": 2}
