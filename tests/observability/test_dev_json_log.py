"""``saga dev --log-format json`` writes its coordinator log as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_dev_writes_the_coordinator_log_as_json_lines(tmp_path: Path) -> None:
    folder = tmp_path / "dev"
    done = subprocess.run(
        [
            sys.executable, "-m", "saga", "dev", "--dir", str(folder), "--demo", "4",
            "--flaky", "1", "--demo-timeout", "5", "--exit-after-demo",
            "--http", "127.0.0.1:0", "--log-format", "json",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = (folder / "logs" / "coordinator.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    # Shipping always fails here: the coordinator logs the retries past the pivot, each
    # line naming the saga and the step.
    attention = [line for line in lines if "needs attention" in line["message"]]
    assert attention, text
    assert all(line["saga_id"] in line["message"] for line in attention)
    assert {line["direction"] for line in attention} == {"forward"}
    assert all(isinstance(line["attempt"], int) for line in attention)
