"""Follow the API's server-sent event stream (``GET /api/events``) for ``saga list --watch``
and ``saga show --follow``: connect, then call back on every batch of saga changes.

The stream says that something changed, not everything about it; the callback re-reads what it
shows. A dropped stream is reconnected (and re-read, since changes may have been missed); one
that cannot be reached after a few tries is a ``CliFailure`` with exit code 5.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from saga.cli_exit import CliFailure, ExitCode
from saga.redact import redact_url

ATTEMPTS = 4
"""Connection tries in a row before giving up (the operator commands retry as often)."""
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
"""The server sends a comment at least every heartbeat (15 s by default): a silent stream
this long is dead."""
MIN_REDRAW_S = 0.25
"""At most this often the callback runs: a busy system's changes are read in batches."""

Change = dict[str, Any]
Refresh = Callable[[list[Change]], Awaitable[bool]]
"""Called once connected (with no changes), then with each batch; True stops following."""


async def follow(url: str, token: str | None, refresh: Refresh, saga_id: str | None = None) -> None:
    """Run ``refresh`` on connecting and on every batch of changes (of ``saga_id`` only, when
    given) until it returns True; raise ``CliFailure`` when the stream cannot be followed."""
    pending: list[Change] = []
    dirty = asyncio.Event()

    async def read() -> None:
        async for change in changes(url, token, saga_id):
            if change is not None:
                pending.append(change)
            dirty.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            waiter = asyncio.create_task(dirty.wait())
            done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                waiter.cancel()
                reader.result()
                return
            dirty.clear()
            batch = pending[:]
            pending.clear()
            if await refresh(batch):
                return
            await asyncio.sleep(MIN_REDRAW_S)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def changes(
    url: str, token: str | None, saga_id: str | None = None
) -> AsyncIterator[Change | None]:
    """Yield None on each (re)connection (re-read then: changes may have been missed in
    between), and each saga change the stream announces."""
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    params = {} if saga_id is None else {"saga_id": saga_id}
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    failures = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(
                    url.rstrip("/") + "/api/events", params=params, headers=headers
                ) as response:
                    if response.status >= 400:
                        raise CliFailure.from_status(response.status, await _problem(response))
                    failures = 0
                    yield None
                    async for message in _messages(response.content):
                        yield message
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                if failures >= ATTEMPTS:
                    reason = str(exc) or type(exc).__name__
                    raise CliFailure(
                        f"cannot reach the saga API at {redact_url(url)}: {reason}",
                        exit_code=ExitCode.UNREACHABLE,
                    ) from exc
            await asyncio.sleep(min(2.0, 0.25 * 2**failures))


async def _messages(content: aiohttp.StreamReader) -> AsyncIterator[Change]:
    """The ``event: saga`` messages of a server-sent event stream, decoded."""
    event, data = "", []
    async for raw in content:
        line = raw.decode(errors="replace").rstrip("\r\n")
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            continue
        if event == "saga" and data:
            with contextlib.suppress(ValueError):
                message = json.loads("\n".join(data))
                if isinstance(message, dict):
                    yield message
        event, data = "", []


async def _problem(response: aiohttp.ClientResponse) -> str:
    try:
        body = await response.json(content_type=None)
        message = str(body["error"]["message"])
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        message = response.reason or "error"
    hint = " (set --token or SAGA_API_TOKEN)" if response.status == 401 else ""
    return f"{response.status}: {message}{hint}"
