"""Fixtures for the security tests: a throwaway PKI in the test's temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.certs import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for localhost and 127.0.0.1, and client certificates."""
    folder: Path = tmp_path_factory.mktemp("pki")
    return make_pki(folder)
