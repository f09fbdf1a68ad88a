"""Loading the example services and sagas of a source checkout, for ``saga dev`` and ``saga soak``.

The ``saga`` package never imports ``services/``, ``examples/`` or ``tests/`` (an import-linter
contract says so): an installed wheel has none of them. The two developer commands that run
them find the checkout they were started in and load its modules by name through
``load_from_checkout``, the one place where library code reaches into the working tree.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import click

from saga.errors import ConfigError

CHECKOUT_PACKAGES = frozenset({"services", "examples"})
"""The checkout's packages ``load_from_checkout`` may load: the example services and sagas.
Never ``tests``: what a command needs from the checkout lives in these two."""


def find_checkout(start: Path, command: str = "saga dev") -> Path:
    """The nearest folder at or above ``start`` holding ``services/`` and ``examples/``.

    Outside a checkout, a ClickException tells the user of ``command`` where to run it.
    """
    for folder in (start, *start.parents):
        if (folder / "services" / "__init__.py").is_file() and (
            folder / "examples" / "order_saga.py"
        ).is_file():
            return folder
    raise click.ClickException(
        f"{command} runs the example services of a source checkout, and found no services/ and"
        f" examples/ folders in {start} or above it: run it from the root of a"
        f" saga-coordinator clone"
    )


def load_from_checkout(module: str, root: Path | None = None) -> ModuleType:
    """Import ``module`` (``services.…`` or ``examples.…``) from the checkout at ``root``
    (default: the one the working folder is in).

    The checkout goes on ``sys.path`` so its packages import by their own names, as they do
    when run with ``python -m``.
    """
    package = module.partition(".")[0]
    if package not in CHECKOUT_PACKAGES:
        raise ConfigError(
            f"load_from_checkout loads {' and '.join(sorted(CHECKOUT_PACKAGES))} only, not"
            f" {module!r}"
        )
    folder = find_checkout(Path.cwd()) if root is None else root
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(module)
