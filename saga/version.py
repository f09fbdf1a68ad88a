"""The installed package's version (``saga.__version__``), read from its metadata once."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "saga-coordinator"


def _read() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


__version__ = _read()
