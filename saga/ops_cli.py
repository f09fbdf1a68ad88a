"""Operator commands against the HTTP API: list, show, compensations, the audited actions, and
sending a saga an outside event; ``list --watch`` and ``show --follow`` follow the event stream.

A failure is a ``CliFailure`` with an exit code from ``saga.cli_exit``; ``saga.cli`` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import signal
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from saga.cli_exit import JSON_ERRORS, CliFailure, ExitCode
from saga.cli_table import table as fitted_table
from saga.cli_table import terminal_width
from saga.events import SagaStatus
from saga.redact import redact_url

if TYPE_CHECKING:
    from saga.cli_follow import Change

DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 30
ATTEMPTS = 4
"""Tries per call when the API cannot be reached (a coordinator restarting, say)."""
RETRY_WAIT = wait_random_exponential(multiplier=0.25, max=2)
"""Jittered back-off between tries, so many scripts retrying at once spread out."""


def is_transient(method: str, exc: BaseException) -> bool:
    """Whether a failed call may be sent again: never after a 4xx; a write only when the
    connection was refused (nothing reached the server), a read after any connection
    failure, a timeout, or a 502/503/504."""
    if isinstance(exc, urllib.error.HTTPError):
        return method == "GET" and exc.code in (502, 503, 504)
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return True
    return method == "GET" and isinstance(reason, ConnectionError | TimeoutError)


class Api:
    """A tiny JSON-over-HTTP client (the standard library's; no event loop in a CLI)."""

    def __init__(self, url: str, token: str | None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise CliFailure(
                f"--url {redact_url(url)!r} is not an http:// or https:// URL",
                exit_code=ExitCode.USAGE,
            )
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: is_transient(method, exc)),
            stop=stop_after_attempt(ATTEMPTS),
            wait=RETRY_WAIT,
            reraise=True,
        )
        try:
            return retrying(_send, request)
        except urllib.error.HTTPError as exc:
            raise CliFailure.from_status(exc.code, _problem(exc)) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliFailure(
                f"cannot reach the saga API at {redact_url(self.url)}: {reason}",
                exit_code=ExitCode.UNREACHABLE,
            ) from exc
        except ValueError as exc:
            raise CliFailure(
                f"the saga API at {redact_url(self.url)} did not answer JSON: {exc}",
                exit_code=ExitCode.ERROR,
            ) from exc


def _send(request: urllib.request.Request) -> Any:
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return json.loads(response.read() or b"{}")


def _problem(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    hint = " (set --token or SAGA_API_TOKEN)" if exc.code == 401 else ""
    return f"{exc.code}: {message}{hint}"


def _time(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ms: int | None) -> str:
    """A log timestamp: ISO 8601, UTC, milliseconds (``2026-12-01T04:11:43.512Z``)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _step(saga: dict[str, Any]) -> str:
    """The current step, with its attempt once it is past the first (``credit #3``)."""
    step, attempt = saga.get("current_step"), saga.get("attempt")
    if not step:
        return "-"
    return f"{step} #{attempt}" if isinstance(attempt, int) and attempt > 1 else str(step)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Plain aligned columns fitted to the terminal's width (``COLUMNS``): long cells are cut
    with ``…``, a row is never wrapped."""
    return fitted_table(headers, rows, terminal_width())


def _error(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    return f"{error.get('code', 'error')}: {error.get('message', '')}"


def _human_error(error: dict[str, Any] | None) -> str:
    """An error's message in words (its code only when it has no message)."""
    if not error:
        return ""
    return str(error.get("message") or error.get("code") or "error")


def last_error(saga: dict[str, Any]) -> str:
    """A saga's last error in human words: the latest failed attempt's message and where it
    happened, else why it is stuck; empty when nothing failed."""
    timeline = saga.get("timeline") or {}
    found: tuple[int, str] | None = None
    for entry in (timeline.get("steps") or []) + (timeline.get("compensations") or []):
        for attempt in entry.get("attempts") or []:
            if not attempt.get("error"):
                continue
            at = attempt.get("sent_ms") or 0
            where = f"{entry['step']} {entry['direction']} #{attempt['attempt']}"
            if found is None or at >= found[0]:
                found = (at, f"{_human_error(attempt['error'])} ({where})")
    if found is not None:
        return found[1]
    health = saga.get("health") or {}
    return str((saga.get("stuck") or {}).get("reason") or health.get("reason") or "")


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """``--json`` is read first (eager), so even a usage error after it is shown as JSON."""
    if value:
        ctx.meta[JSON_ERRORS] = True
    return value


def _live(main: Coroutine[Any, Any, None]) -> None:
    """Run a following command until it ends, Ctrl-C or SIGTERM (both a clean exit 0)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_stoppable(main))


async def _stoppable(main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(main)
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


URL_OPTION = click.option(
    "--url", default=DEFAULT_URL, show_default=True, envvar="SAGA_API_URL", show_envvar=True,
    help="The saga HTTP API (saga coordinator --http, or saga dev).",
)  # fmt: skip
TOKEN_OPTION = click.option(
    "--token", envvar="SAGA_API_TOKEN", show_envvar=True,
    help="Bearer token (viewer, operator, or signal for events).",
)  # fmt: skip
JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, is_eager=True, callback=_remember_json,
    help="Print JSON, for scripts; errors too, on stderr.",
)  # fmt: skip


@click.command("list")
@URL_OPTION
@TOKEN_OPTION
@JSON_OPTION
@click.option(
    "--status", multiple=True, help="running, compensating, stuck, completed, compensated."
)
@click.option(
    "--health", multiple=True, help="progressing, retrying, waiting, needs_attention, stuck."
)
@click.option("--name", help="Saga definition name.")
@click.option("--step", help="Current step.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="next_cursor from a previous page.")
@click.option(
    "--errors", "with_errors", is_flag=True,
    help="Add an error column: each saga's last error in words (one more request a saga).",
)  # fmt: skip
@click.option(
    "--watch", is_flag=True,
    help="Redraw the list on every change (the API's event stream) until Ctrl-C.",
)  # fmt: skip
def list_sagas(
    url: str, token: str | None, as_json: bool, status: tuple[str, ...],
    health: tuple[str, ...], name: str | None, step: str | None, limit: int, cursor: str | None,
    with_errors: bool, watch: bool,
) -> None:  # fmt: skip
    """List sagas, newest first, with their health."""
    query: list[tuple[str, str]] = [("status", s) for s in status] + [("health", h) for h in health]
    for key, value in (("name", name), ("step", step), ("cursor", cursor)):
        if value:
            query.append((key, value))
    query.append(("limit", str(limit)))
    api = Api(url, token)
    path = "/api/sagas?" + urllib.parse.urlencode(query)
    if not watch:
        page = _page(api, path, with_errors)
        _emit(page, as_json, _list_text(page, with_errors))
        return

    async def redraw(changes: list[Change]) -> bool:
        page = await asyncio.to_thread(_page, api, path, with_errors)
        if as_json:
            click.echo(json.dumps(page, separators=(",", ":")))
            return False
        text = _list_text(page, with_errors)
        seen = iso_time(round(datetime.now(UTC).timestamp() * 1000))
        clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else "\n"
        click.echo(f"{clear}sagas at {seen} (Ctrl-C to stop)\n{text}")
        return False

    from saga.cli_follow import follow  # aiohttp: only when following

    _live(follow(url, token, redraw))


def _page(api: Api, path: str, with_errors: bool) -> dict[str, Any]:
    """One page of the list; with ``with_errors``, each saga's last error read beside it."""
    page: dict[str, Any] = api.call("GET", path)
    if with_errors and page["sagas"]:

        def error_of(summary: dict[str, Any]) -> str:
            try:
                detail = api.call("GET", f"/api/sagas/{urllib.parse.quote(summary['saga_id'])}")
            except CliFailure as exc:
                if exc.exit_code != ExitCode.NOT_FOUND:
                    raise
                return ""  # gone since the list was read
            return last_error(detail)

        with ThreadPoolExecutor(max_workers=8) as pool:
            for summary, error in zip(
                page["sagas"], pool.map(error_of, page["sagas"]), strict=True
            ):
                summary["error"] = error
    return page


def _list_text(page: dict[str, Any], with_errors: bool) -> str:
    headers = ["saga", "definition", "status", "health", "step", "updated (utc)"]
    rows = [
        [s["saga_id"], f"{s['name']} v{s['version']}", s["status"], s["health"],
         _step(s), _time(s["updated_ms"])]
        + ([s.get("error") or ""] if with_errors else [])
        for s in page["sagas"]
    ]  # fmt: skip
    text = table([*headers, "error"] if with_errors else headers, rows)
    if page.get("next_cursor"):
        text += f"\nmore: --cursor {page['next_cursor']}"
    return text


@click.command("show")
@click.argument("saga_id")
@URL_OPTION
@TOKEN_OPTION
@JSON_OPTION
@click.option(
    "--follow", is_flag=True,
    help="Then print each new or changed timeline entry as it happens, until the saga"
    " finishes or Ctrl-C.",
)  # fmt: skip
def show(saga_id: str, url: str, token: str | None, as_json: bool, follow: bool) -> None:
    """Show one saga: status, health, every step and compensation attempt, operator actions."""
    api = Api(url, token)
    path = f"/api/sagas/{urllib.parse.quote(saga_id, safe='')}"
    saga = api.call("GET", path)
    if not follow:
        if as_json:
            _emit(saga, True, "")
            return
        click.echo(_show_text(saga))
        return
    _live(_follow_saga(api, path, saga, as_json))


async def _follow_saga(api: Api, path: str, first: dict[str, Any], as_json: bool) -> None:
    """``show --follow``: the saga, then what changes in it, until it is finished."""
    from saga.cli_follow import follow  # aiohttp: only when following

    follower = _SagaFollower(as_json)
    if follower.report(first):
        return

    async def refresh(changes: list[Change]) -> bool:
        # Also on (re)connecting: whatever changed before the stream was open is shown.
        return follower.report(await asyncio.to_thread(api.call, "GET", path))

    await follow(api.url, api.token, refresh, saga_id=first["saga_id"])


class _SagaFollower:
    """What ``show --follow`` printed, so that it prints only what is new or changed."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.printed: dict[tuple[Any, ...], str] = {}

    def report(self, saga: dict[str, Any]) -> bool:
        """Print what is new in ``saga``; whether it is finished (nothing more to follow)."""
        if self.as_json:
            entries = {("json",): json.dumps(saga, separators=(",", ":"))}
        else:
            entries = {**_entries(saga), ("status",): _status_line(saga)}
        news = [(key, line) for key, line in entries.items() if self.printed.get(key) != line]
        if self.printed or self.as_json:
            # Each line starts with its ISO time: in order of time, as a log reads.
            for _, line in sorted(news, key=lambda item: item[1]):
                click.echo(line)
        else:
            click.echo(_show_text(saga))
        self.printed.update(news)
        return SagaStatus(saga["status"]).is_final


def _status_line(saga: dict[str, Any]) -> str:
    health = saga.get("health") or {}
    at = iso_time(saga.get("updated_ms"))
    return f"{at}  saga {saga['status']} ({health.get('state', 'finished')})"


def _entries(saga: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    """The saga's timeline as one line per attempt, operator action and outside event, by a
    key that stays the same when the entry changes (an attempt's outcome arriving)."""
    found: dict[tuple[Any, ...], str] = {}
    timeline = saga["timeline"]
    for entry in timeline["steps"] + timeline["compensations"]:
        step, direction = entry["step"], entry["direction"]
        for attempt in entry["attempts"]:
            error = _error(attempt["error"])
            found[("attempt", step, direction, attempt["attempt"])] = (
                f"{iso_time(attempt['sent_ms'])}  {step} {direction} #{attempt['attempt']}"
                f" {_outcome(entry, attempt)}" + (f": {error}" if error else "")
            )
        if entry.get("by_hand"):
            by_hand = entry["by_hand"]
            found[("by_hand", step, direction)] = (
                f"{iso_time(by_hand['at_ms'])}  {step} {direction} {by_hand['action']} by hand:"
                f" {by_hand['reason']}"
            )
    for n, action in enumerate(timeline["operator_actions"]):
        found[("action", n)] = (
            f"{iso_time(action['at_ms'])}  operator {action['action']} by {action['actor']}"
            f" ({action['step'] or '-'}): {action['reason']}"
        )
    for signal_ in saga.get("signals") or []:
        found[("signal", signal_["id"])] = (
            f"{iso_time(signal_['at_ms'])}  event {signal_['event']} id {signal_['id']}"
            f" taken by {signal_['step'] or '(kept)'}"
        )
    return found


def _show_text(saga: dict[str, Any]) -> str:
    """``saga show``'s text: the saga, its timeline, what is in progress, what can be done."""
    health = saga.get("health") or {}
    lines = [
        f"saga {saga['saga_id']}  {saga['name']} v{saga['version']}  {saga['status']}",
        f"health: {health.get('state', 'finished')}"
        + (f"  step {health['step']} ({health['direction']}) attempt {health['attempt']}"
           if health.get("step") else "")
        + (f"  - {health['reason']}" if health.get("reason") else ""),
    ]  # fmt: skip
    if saga.get("compensation"):
        lines.append(f"compensating because: {saga['compensation']['reason']}")
    lines = [_prose(line) for line in lines]
    rows = []
    timeline = saga["timeline"]
    entries = timeline["steps"] + timeline["compensations"]
    # Branches: a lane column, so steps in flight together read as side by side.
    branched = any((entry.get("lane") or 0) > 0 for entry in entries)
    for entry in entries:
        lane = [entry["lane"] if entry.get("lane") is not None else "-"] if branched else []
        if not entry["attempts"]:
            rows.append([*lane, entry["step"], entry["direction"], "-", _outcome(entry, None),
                         "-", ""])  # fmt: skip
        for attempt in entry["attempts"]:
            rows.append([
                *lane, entry["step"], entry["direction"], attempt["attempt"],
                _outcome(entry, attempt), _time(attempt["sent_ms"]),
                _human_error(attempt["error"]),
            ])  # fmt: skip
        if entry.get("by_hand"):
            by_hand = entry["by_hand"]
            rows.append([*lane, entry["step"], entry["direction"], "-",
                         f"{by_hand['action']} by hand", _time(by_hand["at_ms"]),
                         by_hand["reason"]])  # fmt: skip
    headers = ["step", "direction", "attempt", "outcome", "at (utc)", "error"]
    lines += ["", table(["lane", *headers] if branched else headers, rows)]
    active = saga.get("active") or []
    if len(active) > 1 or any(a.get("phase") in ("accepted", "awaiting") for a in active):
        lines += ["", "in progress:", table(
            ["step", "direction", "phase", "attempt", "until (utc)"],
            [[a["step"], a["direction"], a["phase"], a.get("attempt"), _until(a)] for a in active],
        )]  # fmt: skip
    signals = saga.get("signals") or []
    if signals:
        lines += ["", "outside events:", table(
            ["at (utc)", "event", "id", "sender", "taken by"],
            [[_time(s["at_ms"]), s["event"], s["id"], s["sender"] or "-",
              s["step"] or "(kept)"] for s in signals],
        )]  # fmt: skip
    audit = [
        [_time(a["at_ms"]), a["action"], a["actor"], a["step"], a["reason"]]
        for a in timeline["operator_actions"]
    ]
    if audit:
        lines += [
            "",
            "operator actions:",
            table(["at (utc)", "action", "who", "step", "why"], audit),
        ]
    allowed = [name for name, fit in saga["actions"].items() if fit["allowed"]]
    lines += ["", _prose(f"actions now: {', '.join(allowed) or 'none'}")]
    return "\n".join(lines)


def _prose(line: str) -> str:
    """A line of words wrapped to the terminal's width, later lines indented."""
    width = terminal_width()
    if width is None or len(line) <= width:
        return line
    return textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False)


def _outcome(entry: dict[str, Any], attempt: dict[str, Any] | None) -> str:
    """An attempt's outcome, with what an accepted step or a wait is waiting for."""
    if attempt is None:
        state = str(entry["state"])
        return f"{state}: {entry['event']}" if entry.get("event") and state == "pending" else state
    outcome = str(attempt["outcome"])
    if outcome == "accepted":
        return f"accepted until {_time(attempt.get('deadline_ms'))}"
    if outcome == "awaiting":
        return f"awaiting {entry.get('event')} until {_time(attempt.get('deadline_ms'))}"
    return outcome


def _until(active: dict[str, Any]) -> str:
    if active.get("phase") == "accepted":
        return _time(active.get("deadline_ms"))
    if active.get("phase") == "awaiting":
        return f"{active.get('waiting_for')} by {_time(active.get('timeout_at_ms'))}"
    return _time(active.get("retry_at_ms") or active.get("timeout_at_ms"))


@click.command("compensations")
@URL_OPTION
@TOKEN_OPTION
@JSON_OPTION
def compensations(url: str, token: str | None, as_json: bool) -> None:
    """Sagas compensating now, compensations that keep failing, and stuck sagas."""
    page = Api(url, token).call("GET", "/api/compensations?limit=200")
    rows = [
        [c["category"], c["saga_id"], c["name"], c["step"], c["attempts"],
         _error(c["last_error"]) or c.get("reason") or "", _time(c["since_ms"])]
        for c in page["compensations"]
    ]  # fmt: skip
    text = table(["state", "saga", "name", "step", "attempts", "last error", "since (utc)"], rows)
    _emit(page, as_json, text)


@click.command("stats")
@click.option(
    "--minutes", type=click.IntRange(1, 1440), default=60, show_default=True,
    help="The window of the per-name and failing-step figures.",
)  # fmt: skip
@URL_OPTION
@TOKEN_OPTION
@JSON_OPTION
def stats(minutes: int, url: str, token: str | None, as_json: bool) -> None:
    """Counts by status and health, and per saga name over the last minutes: finished,
    compensation rate and p50/p99 duration; the steps that fail most (GET /api/stats)."""
    figures = Api(url, token).call("GET", f"/api/stats?minutes={minutes}")
    _emit(figures, as_json, _stats_text(figures))


def _stats_text(figures: dict[str, Any]) -> str:
    counts = [[s, n] for s, n in figures["statuses"].items() if n]
    counts += [[f"health {h}", n] for h, n in figures["healths"].items() if n]
    window = figures["window"]["minutes"]
    parts = [
        f"stuck {figures['stuck']}, needs attention {figures['needs_attention']}",
        table(["status / health", "sagas"], counts or [["(none)", 0]]),
    ]
    names = [
        [n["name"], n["completed"], n["compensated"], f"{n['compensation_rate']:.0%}",
         _duration(n["p50_ms"]), _duration(n["p99_ms"])]
        for n in figures["by_name"]
    ]  # fmt: skip
    if names:
        parts.append(f"finished in the last {window} min, by saga name:")
        parts.append(
            table(["name", "completed", "compensated", "compensated %", "p50", "p99"], names)
        )
    failing = [
        [f["name"], f["step"], f["direction"], f["failures"]] for f in figures["failing_steps"]
    ]
    if failing:
        parts.append(f"steps that failed most in the last {window} min:")
        parts.append(table(["name", "step", "direction", "failures"], failing))
    return "\n".join(parts)


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 // 1000} s"


def _action(action: str, help_text: str) -> click.Command:
    @click.command(action.replace("_", "-"), help=help_text)
    @click.argument("saga_id")
    @click.option("--reason", required=True, help="Why (recorded in the saga's audit log).")
    @click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
    @click.option("--actor", help="Who is acting (default: your login name).")
    @URL_OPTION
    @TOKEN_OPTION
    @JSON_OPTION
    def command(
        saga_id: str, reason: str, dry_run: bool, actor: str | None, url: str,
        token: str | None, as_json: bool, result: str | None = None,
    ) -> None:  # fmt: skip
        body: dict[str, Any] = {"reason": reason, "actor": actor or _login()}
        if result is not None:
            try:
                body["result"] = json.loads(result)
            except ValueError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="--result") from exc
        path = f"/api/sagas/{urllib.parse.quote(saga_id, safe='')}/actions/{action}"
        answer = Api(url, token).call("POST", path + ("?dry_run=1" if dry_run else ""), body)
        head = "dry run, nothing changed: " if dry_run else ""
        lines = [f"{head}{action} {saga_id} -> {answer['status']} ({answer['health'] or '-'})"]
        if answer["compensations"]:
            lines.append("compensations to run, in order: " + " -> ".join(answer["compensations"]))
        for c in answer["commands"]:
            lines.append(f"next: {c['service']}.{c['command']} ({c['step']}, {c['direction']})")
        _emit(answer, as_json, "\n".join(lines))

    if action == "skip":
        command = click.option("--result", help="JSON object to record as the step's result.")(
            command
        )
    return command


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


ACTIONS = [
    _action("retry", "Retry the current step or compensation now (stuck: a fresh budget)."),
    _action("cancel", "Compensate a saga that has not passed its pivot."),
    _action("resolve", "Mark the failing compensation as done by hand, and go on."),
    _action("skip", "Mark the failing forward step as done by hand, and go on."),
    _action(
        "force_forward", "At or past the pivot: take the pivot as done, or retry without limit."
    ),
]


@click.command("event")
@click.argument("saga_id")
@click.argument("event")
@click.option(
    "--id",
    "event_id",
    required=True,
    help="Your id for this event: repeating it with the same id changes nothing.",
)
@click.option(
    "--payload",
    default="{}",
    show_default=True,
    help="The event's data, a JSON object (the wait step's result).",
)
@URL_OPTION
@TOKEN_OPTION
@JSON_OPTION
def event(
    saga_id: str, event: str, event_id: str, payload: str, url: str, token: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Send the outside event EVENT (a wait step's event name) to the saga SAGA_ID.

    An event that comes before the saga reaches its wait step is kept for it. Needs a token
    of the signal or operator role.
    """
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from exc
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    where, what = (urllib.parse.quote(part, safe="") for part in (saga_id, event))
    path = f"/api/sagas/{where}/events/{what}"
    answer = Api(url, token).call("POST", path, {"id": event_id, "payload": data})
    if not answer["recorded"]:
        text = f"event {event!r} id {event_id!r} was already received by {saga_id}: nothing changed"
    elif answer["step"] is None:
        text = f"event {event!r} recorded; {saga_id} keeps it until it reaches its wait step"
    else:
        text = f"event {event!r} recorded; it completed the step {answer['step']} of {saga_id}"
    _emit(answer, as_json, f"{text} (saga {answer['status']})")


COMMANDS: list[click.Command] = [list_sagas, show, compensations, stats, *ACTIONS, event]
"""Every operator command, for ``saga.cli`` to register."""
