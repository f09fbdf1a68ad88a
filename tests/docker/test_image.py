"""docker/Dockerfile and the helpers it installs: pinned, cache-friendly, read-only code.

No image can be built here (no Docker engine), so the Dockerfile is read instruction by
instruction, its dependency step is run on the real pyproject.toml, and the entrypoint and
healthcheck scripts it installs are run as the containers run them.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker.topology import DOCKER, REPO, compose, project_services, secret_targets

DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
HEALTHCHECK = DOCKER / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def index_of(keyword: str, pattern: str) -> int:
    matches = [
        i for i, (k, rest) in enumerate(instructions()) if k == keyword and re.search(pattern, rest)
    ]
    assert len(matches) == 1, f"{keyword} {pattern}: {matches}"
    return matches[0]


# The Dockerfile


def test_base_image_is_a_pinned_python_release_with_its_digest_noted() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", froms[0])
    assert re.search(r"sha256:[0-9a-f]{64}", DOCKERFILE.read_text())


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    manifest = index_of("COPY", r"^pyproject\.toml ")
    deps = index_of("RUN", r"pip install -r ")
    code = index_of("COPY", r"^saga ")
    package = index_of("RUN", r"pip install --no-deps \.")
    assert manifest < deps < code < package
    # Nothing of the code is in the build before the dependency layer.
    copied_before = [rest for k, rest in instructions()[:deps] if k in ("COPY", "ADD")]
    assert copied_before == ["pyproject.toml ./"]


def test_the_dependency_step_lists_exactly_the_projects_dependencies(tmp_path: Path) -> None:
    run = instructions()[index_of("RUN", r"pip install -r ")][1]
    script = re.search(r'python -c ".+?"', run)
    assert script is not None
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    # As the image's /bin/sh runs it, with this Python 3.11+ as `python`.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["sh", "-c", script.group(0)], cwd=tmp_path, env={**os.environ, "PATH": path},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (REPO / "pyproject.toml").open("rb") as f:
        expected = tomllib.load(f)["project"]["dependencies"]
    assert done.stdout.split() == expected


def test_code_is_roots_and_read_only_to_an_unprivileged_user() -> None:
    steps = instructions()
    text = " ".join(rest for _, rest in steps)
    assert "chown" not in text, "the code must stay root's"
    users = [i for i, (k, _) in enumerate(steps) if k == "USER"]
    assert len(users) == 1
    user = steps[users[0]][1]
    assert re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", user), "a numeric, non-root uid:gid"
    # Everything that writes into the image happens as root, before the switch.
    assert all(k not in ("RUN", "COPY", "ADD") for k, _ in steps[users[0] :])
    assert re.search(r"chmod -R a-w,a\+rX /app", text)
    assert re.search(rf"useradd .*--uid {user.split(':')[0]}\b.*--no-create-home", text)


def test_the_image_runs_commands_through_the_secrets_entrypoint() -> None:
    steps = dict(instructions())
    assert steps["ENTRYPOINT"] == '["/usr/local/bin/saga-entrypoint"]'
    text = DOCKERFILE.read_text()
    assert "COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/saga-entrypoint" in text
    assert "COPY --chmod=755 docker/healthcheck.py /usr/local/bin/saga-healthcheck" in text
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {"!docker/entrypoint.sh", "!docker/healthcheck.py"} <= set(ignore)


# docker/entrypoint.sh


def run_entrypoint(
    secrets: Path, *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ["PATH"], "SAGA_SECRETS_DIR": str(secrets), **(env or {})}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command], env=environ, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip


def test_entrypoint_turns_secrets_named_like_variables_into_variables(tmp_path: Path) -> None:
    (tmp_path / "SAGA_NATS_PASSWORD").write_text("s3cret with spaces $HOME\n")
    (tmp_path / "PGPASSWORD").write_text("pg'pass")
    (tmp_path / "tls-key.pem").write_text("left alone")
    done = run_entrypoint(tmp_path, "env")
    assert done.returncode == 0, done.stderr
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert env["SAGA_NATS_PASSWORD"] == "s3cret with spaces $HOME"
    assert env["PGPASSWORD"] == "pg'pass"
    assert "tls-key.pem" not in done.stdout
    assert "left alone" not in done.stdout


def test_entrypoint_refuses_a_secret_that_is_also_in_the_environment(tmp_path: Path) -> None:
    (tmp_path / "PGPASSWORD").write_text("from the secret")
    done = run_entrypoint(tmp_path, "env", env={"PGPASSWORD": "from the environment"})
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "entrypoint: PGPASSWORD is set both in the environment and as a secret; keep one"
    ]
    assert "from the" not in done.stdout + done.stderr


def test_entrypoint_refuses_an_empty_secret(tmp_path: Path) -> None:
    (tmp_path / "SAGA_NATS_PASSWORD").write_text("\n")
    done = run_entrypoint(tmp_path, "env")
    assert done.returncode != 0
    assert "SAGA_NATS_PASSWORD is empty" in done.stderr


def test_entrypoint_without_secrets_runs_the_command(tmp_path: Path) -> None:
    done = run_entrypoint(tmp_path / "absent", "sh", "-c", 'echo "$0 $#"', env={})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sh 0\n"


COORDINATOR_API = """
from saga.api.options import http_settings
from saga.cli import main
from saga.cli_options import HTTP_PARAMS
import sys

# As `saga coordinator` parses its command line and environment, then checks --http.
context = main.commands["coordinator"].make_context("coordinator", sys.argv[1:])
params = dict(context.params)
api = {k: v for k, v in params.items() if k in HTTP_PARAMS and k != "http"}
settings = http_settings(params["http"], **api)
print(" ".join(sorted(f"{t.name}:{t.role.value}" for t in settings.config.tokens)))
"""


def test_made_tokens_let_the_coordinator_serve_its_published_address(tmp_path: Path) -> None:
    # make-secrets.sh writes the files, compose mounts them under their targets, the entrypoint
    # exports them, and `saga coordinator --http 0.0.0.0:8080` (which refuses a non-loopback
    # address without tokens) reads them from SAGA_TOKEN_*.
    made = tmp_path / "made"
    subprocess.run(["sh", str(DOCKER / "make-secrets.sh"), str(made)], check=True, timeout=30)
    mounted = tmp_path / "run-secrets"
    mounted.mkdir()
    files = {name: Path(spec["file"]).name for name, spec in compose()["secrets"].items()}
    coordinator = project_services()["coordinator-a"]
    for target, source in secret_targets(coordinator).items():
        (mounted / target).write_text((made / files[source]).read_text())
    argv = coordinator["command"][2:]
    env = {k: v for k, v in coordinator["environment"].items() if not k.startswith("SAGA_NATS")}
    done = run_entrypoint(mounted, sys.executable, "-c", COORDINATOR_API, *argv, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["operator:operator", "viewer:viewer"]

    # Without the token secrets the same command refuses to start.
    for target in ("SAGA_TOKEN_OPERATOR", "SAGA_TOKEN_VIEWER"):
        (mounted / target).unlink()
    refused = run_entrypoint(mounted, sys.executable, "-c", COORDINATOR_API, *argv, env=env)
    assert refused.returncode != 0
    assert "without tokens" in refused.stderr


# docker/healthcheck.py


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=30
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_healthcheck_passes_on_2xx_and_fails_otherwise(http_server: str) -> None:
    assert healthcheck("http", f"{http_server}/readyz").returncode == 0
    failed = healthcheck("http", f"{http_server}/not-ready")
    assert failed.returncode == 1
    assert failed.stderr == f"unhealthy: {http_server}/not-ready: HTTP 503\n"


def test_http_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    failed = healthcheck("http", f"http://127.0.0.1:{port}/readyz")
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"unhealthy: http://127.0.0.1:{port}/readyz: ")


def test_nats_healthcheck_sees_an_established_connection_to_the_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        before = healthcheck("nats", str(port))
        assert before.returncode == 1
        assert before.stderr == f"unhealthy: no connection to a NATS server on :{port}\n"
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert client.fileno() >= 0
                assert healthcheck("nats", str(port)).returncode == 0


def test_healthcheck_usage_errors_are_one_line() -> None:
    for args in ([], ["nats", "x"], ["http"], ["ftp", "x"]):
        done = healthcheck(*args)
        assert done.returncode == 1
        assert done.stderr.startswith("unhealthy: usage: saga-healthcheck http URL"), args
