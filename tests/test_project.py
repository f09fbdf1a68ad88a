"""The project's promises to a new user: the Quick start, the CLI, the public API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

import saga
from saga.cli import load_sagas

REPO = Path(__file__).resolve().parents[1]


def quick_start_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_command_lines_and_ci_runs_the_second() -> None:
    lines = quick_start_lines()
    assert len(lines) == 2
    assert lines[0] == "pip install . && saga dev --demo 20"
    assert lines[1] in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_saga_demo_completes_one_order_and_compensates_the_other() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "saga", "demo"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "=> completed" in done.stdout
    assert "=> compensated" in done.stdout
    assert "'bob': 100" in done.stdout  # bob's reserved credit was released


def test_public_api_is_pinned() -> None:
    assert sorted(saga.__all__) == sorted(
        [
            "FOREVER", "CommandContext", "ConcurrencyError", "ConfigError", "Coordinator",
            "DefinitionError", "Direction", "IdempotencyStoreError", "LogError", "NatsSecurity",
            "NatsTransport", "Outcome", "Participant",
            "PoolOptions", "ProtocolError", "QueryError", "SagaQuery",
            "Rejected", "RetryPolicy", "Saga", "SagaError", "SagaHandle", "SagaLog",
            "SagaConflictError", "SagaNotFoundError", "SagaResult", "SagaStatus",
            "SqlIdempotencyStore", "SqlSagaLog",
            "StateError", "Step", "StepError", "StepKind", "Transport", "TransportError",
            "UnknownSagaError", "__version__", "redact_url", "FencedError", "StartReply",
            "start_saga", "Wait", "SignalResult", "SignalReply", "send_event",
            "CompletionRefused",
        ]
    )  # fmt: skip
    for name in saga.__all__:
        assert getattr(saga, name) is not None


def test_load_sagas_from_module_or_attribute() -> None:
    from tests.integration import crash_sagas

    assert load_sagas("tests.integration.crash_sagas") == list(crash_sagas.SAGAS)
    assert load_sagas("tests.integration.crash_sagas:ORDER") == [crash_sagas.ORDER]
    assert load_sagas("tests.integration.crash_sagas:SAGAS") == list(crash_sagas.SAGAS)
    with pytest.raises(click.BadParameter, match="cannot import"):
        load_sagas("no_such_module_here")
    with pytest.raises(click.BadParameter, match="no attribute"):
        load_sagas("tests.integration.crash_sagas:NOPE")
    with pytest.raises(click.BadParameter, match="does not name saga definitions"):
        load_sagas("tests.integration.crash_sagas:FAST")


def test_coordinator_command_rejects_a_bad_sagas_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "saga", "coordinator", "--sagas", "no_such_module_here"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot import 'no_such_module_here'" in done.stderr
