"""Container healthchecks for the project image (stdlib only; no curl in a slim image).

    saga-healthcheck http URL         the URL answers 2xx within the timeout (the coordinator's
                                      /readyz: log and NATS both usable)
    saga-healthcheck nats [PORT]      this container holds an established TCP connection to a
                                      NATS server's client port (default 4222)

A service replica has no HTTP port; it connects to NATS only after its database opened and its
handlers were built, and nats-py holds that connection (reconnecting when a node goes), so an
established connection to the client port is the sign that it serves. Exit 0 when healthy,
1 with one line on stderr otherwise.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 3.0
NATS_PORT = 4222
_ESTABLISHED = "01"
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def http_ok(url: str) -> str | None:
    """None when ``url`` answers 2xx, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:  # urlopen raises for 4xx/5xx
        return f"{url}: HTTP {exc.code}"
    except OSError as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def established_to(port: int, tables: tuple[str, ...] = _TCP_TABLES) -> bool:
    """Whether this network namespace has an established TCP connection to remote ``port``."""
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:  # no IPv6 in this namespace
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st ...; addresses are HEXIP:HEXPORT
            if (
                len(fields) > 3
                and fields[3] == _ESTABLISHED
                and int(fields[2].rsplit(":", 1)[1], 16) == port
            ):
                return True
    return False


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        problem = http_ok(argv[1])
    elif 1 <= len(argv) <= 2 and argv[0] == "nats" and (len(argv) == 1 or argv[1].isdigit()):
        port = int(argv[1]) if len(argv) == 2 else NATS_PORT
        problem = None if established_to(port) else f"no connection to a NATS server on :{port}"
    else:
        problem = "usage: saga-healthcheck http URL | saga-healthcheck nats [PORT]"
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
