"""``saga coordinator --max-in-flight-per-service`` and ``--fixed-limit`` reach the coordinator."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import saga.cli
from saga.cli import main

SAGAS = "tests.coordinator.shop:order_saga"


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, dict[str, Any]]:
    given: dict[str, Any] = {}

    async def serve(*_args: Any) -> None:
        flow = next(arg for arg in _args if isinstance(arg, saga.cli._Flow))
        given.update(flow.coordinator_kwargs())

    monkeypatch.setattr(saga.cli, "_serve", serve)
    monkeypatch.setattr(saga.cli, "load_sagas", lambda spec: [])
    result = CliRunner().invoke(main, ["coordinator", "--sagas", SAGAS, *args])
    return result.exit_code, result.output, given


def test_the_default_leaves_the_coordinators_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(monkeypatch) == (0, "", {"adaptive_limit": True})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-in-flight-per-service", "8"], {"max_in_flight_per_service": 8}),
        (["--max-in-flight-per-service", "unbounded"], {"max_in_flight_per_service": None}),
    ],
)
def test_a_limit_or_unbounded_is_passed_on(
    monkeypatch: pytest.MonkeyPatch, args: list[str], expected: dict[str, Any]
) -> None:
    code, _, given = _run(monkeypatch, *args, "--fixed-limit")
    assert code == 0
    assert given == {**expected, "adaptive_limit": False}


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_a_bad_limit_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    code, output, given = _run(monkeypatch, "--max-in-flight-per-service", bad)
    assert code == 2
    assert "is not a whole number >= 1 nor 'unbounded'" in output
    assert given == {}
