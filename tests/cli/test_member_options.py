"""``saga coordinator --name``, ``--lease`` and ``--advertise-url`` reach the coordinator,
and bad values are one clear line."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import saga.cli
from saga.cli import main

SAGAS = "tests.coordinator.shop:order_saga"


def _run(
    monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, dict[str, Any]]:
    given: dict[str, Any] = {}

    async def serve(*_args: Any) -> None:
        member = next(arg for arg in _args if isinstance(arg, saga.cli._Member))
        given.update(vars(member))

    monkeypatch.setattr(saga.cli, "_serve", serve)
    monkeypatch.setattr(saga.cli, "load_sagas", lambda spec: [])
    result = CliRunner().invoke(main, ["coordinator", "--sagas", SAGAS, *args], env=env)
    return result.exit_code, result.output, given


def test_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(monkeypatch) == (0, "", {"name": None, "lease_ms": 10_000, "api_url": None})


def test_options_and_their_variables_are_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, given = _run(
        monkeypatch, "--name", "coord-a", "--lease", "2.5", "--advertise-url", "http://a:8080"
    )
    assert (code, given) == (0, {"name": "coord-a", "lease_ms": 2500, "api_url": "http://a:8080"})
    env = {
        "SAGA_COORDINATOR_NAME": "coord-b",
        "SAGA_LEASE": "30",
        "SAGA_ADVERTISE_URL": "https://b.example:8443",
    }
    code, _, given = _run(monkeypatch, env=env)
    assert code == 0
    assert given == {"name": "coord-b", "lease_ms": 30_000, "api_url": "https://b.example:8443"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--name", "two words"], "without spaces"),
        (["--name", "x" * 101], "1 to 100"),
        (["--lease", "0.1"], "0.1"),
        (["--lease", "soon"], "soon"),
        (["--advertise-url", "ftp://a"], "http:// or https://"),
        (["--advertise-url", "http://ana:secret@a:8080"], "must not carry a user"),
    ],
)
def test_bad_values_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    code, output, given = _run(monkeypatch, *args)
    assert code == 2
    assert says in output
    assert "Traceback" not in output
    assert "secret" not in output
    assert given == {}
