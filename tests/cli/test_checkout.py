"""The library reaches into the checkout only through ``saga.checkout``, and import-linter
holds the rest of it to that: ``saga`` imports no ``tests``, ``services`` or ``examples``,
and click stays in the command-line modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from saga.checkout import load_from_checkout
from tests.cli.procs import REPO


def test_loads_the_shops_books_from_the_checkout() -> None:
    world = load_from_checkout("services.world", REPO)
    assert Path(world.__file__ or "") == REPO / "services" / "world.py"
    assert callable(world.check_invariants)
    assert callable(world.effects_twice)


def test_finds_the_checkout_from_the_working_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO / "services" / "payments")
    assert load_from_checkout("examples.order_saga").ORDER_SAGA.name == "order"


def test_outside_a_checkout_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(click.ClickException, match="root of a saga-coordinator clone"):
        load_from_checkout("examples.order_saga")


@pytest.mark.parametrize("module", ["tests.services.world", "saga.dev", "os"])
def test_loads_nothing_but_the_services_and_examples(module: str) -> None:
    with pytest.raises(ValueError, match="loads examples and services only"):
        load_from_checkout(module, REPO)


def test_import_linter_keeps_the_library_off_the_checkout_and_click_in_the_cli() -> None:
    lint = Path(sys.executable).parent / "lint-imports"  # installed with the test extra
    done = subprocess.run(
        [str(lint), "--contract", "saga-without-checkout", "--contract", "click-in-cli"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout
