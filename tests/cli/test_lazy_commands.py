"""``saga --help`` and the operator commands never import ``saga dev``, ``saga soak`` or the
HTTP server; the developer commands are imported when they are the command given."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from saga.cli import LAZY_COMMANDS, main
from tests.cli.procs import REPO

PROBE = """
import json, sys
from saga.cli import main
try:
    main(sys.argv[1:], prog_name="saga")
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted(sys.modules)))
"""
"""Runs ``saga ARGS`` in a fresh interpreter, then prints every module it imported."""

HEAVY = ("saga.dev", "saga.soak", "saga.checkout", "saga.api", "prometheus_client")
"""What only ``saga dev``, ``saga soak`` and a served API need."""


def saga_imports(*args: str) -> tuple[str, set[str]]:
    """The output of ``saga ARGS`` and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output, _, modules = done.stdout.rpartition("MODULES=")
    return output + done.stderr, set(json.loads(modules))


def loaded(modules: set[str], package: str) -> bool:
    return any(m == package or m.startswith(package + ".") for m in modules)


def test_importing_the_command_loads_none_of_the_heavy_commands() -> None:
    _, modules = saga_imports()  # no arguments: the group's usage, as `saga` prints it
    assert "saga.cli" in modules
    assert [p for p in HEAVY if loaded(modules, p)] == []


def test_help_lists_every_command_without_importing_dev_or_soak() -> None:
    output, modules = saga_imports("--help")
    assert [p for p in HEAVY if loaded(modules, p)] == []
    listed = {line.split()[0] for line in output.split("Commands:")[1].splitlines() if line}
    assert {"dev", "soak", "coordinator", "list", "show", "log", "migrate", "demo"} <= listed
    assert "Run many order sagas while SIGKILLing and pausing" in output


def test_an_operator_command_imports_neither_dev_soak_nor_the_server() -> None:
    output, modules = saga_imports("list", "--url", "http://127.0.0.1:9/")
    assert "cannot reach the saga API" in output  # it ran, and failed as it should
    assert "saga.ops_cli" in modules
    assert [p for p in HEAVY if loaded(modules, p)] == []


def test_a_developer_command_is_imported_when_it_is_the_command_given() -> None:
    output, modules = saga_imports("dev", "--help")
    assert "--exit-after-demo" in output
    assert "saga.dev" in modules
    assert "saga.soak" not in modules


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_the_listed_summary_is_the_commands_own(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    assert command.name == name
    stand_in = click.Command(name, help=LAZY_COMMANDS[name].summary)
    for limit in range(20, 240, 7):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)
