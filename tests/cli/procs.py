"""Helpers for tests that run ``saga`` commands as real processes and look for what is left."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[2]
SECRET = "S3cretPw"
"""The password put into every URL; it must never appear in a command's output."""


def saga(*args: str) -> list[str]:
    return [sys.executable, "-m", "saga", *args]


def with_password(url: str, password: str = SECRET) -> str:
    """``url`` with ``password`` in its user info (PostgreSQL's trust auth accepts any)."""
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _stat(pid: str) -> tuple[str, int] | None:
    """(state, process group) of a process, from /proc (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[2])


def live_in_groups(groups: set[int]) -> list[int]:
    """Pids of live (not zombie) processes in any of the process groups ``groups``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None and stat[0] != "Z" and stat[1] in groups:
                found.append(int(entry.name))
    return found


def live_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (a test's temp path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        stat = _stat(entry.name)
        if text in cmdline and stat is not None and stat[0] != "Z":
            found.append(int(entry.name))
    return found
