"""The ``saga`` command's exit codes, the one table scripts can rely on, and the failure that
carries one (shown as one line, or as JSON on stderr with ``--json``).

This module imports no click: ``saga.cli`` turns a ``CliFailure`` into output and an exit.
"""

from __future__ import annotations

import json
from enum import IntEnum


class ExitCode(IntEnum):
    """What a ``saga`` command's exit status means. The values never change."""

    OK = 0
    """Done."""
    ERROR = 1
    """Any other failure: the server failed (5xx), a log error, an unexpected answer."""
    USAGE = 2
    """Bad usage: a wrong option or argument (click's), or a request the API called bad (400)."""
    NOT_FOUND = 3
    """No such saga (or definition): 404."""
    CONFLICT = 4
    """Refused: the saga's state does not allow it, or the id is taken (409, 422)."""
    UNREACHABLE = 5
    """The API could not be reached: connection refused, a timeout, the stream lost."""
    UNAUTHORISED = 6
    """No token, or one whose role may not do this (401, 403)."""


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.ERROR: "other error",
    ExitCode.USAGE: "bad usage (wrong option or argument; API answered 400)",
    ExitCode.NOT_FOUND: "not found (404)",
    ExitCode.CONFLICT: "conflict or refused (409, 422)",
    ExitCode.UNREACHABLE: "API unreachable (connection refused, timeout)",
    ExitCode.UNAUTHORISED: "unauthorised (401, 403)",
}
"""One line per exit code, for ``saga --help`` (the README has the same table)."""

_BY_STATUS = {
    400: ExitCode.USAGE,
    401: ExitCode.UNAUTHORISED,
    403: ExitCode.UNAUTHORISED,
    404: ExitCode.NOT_FOUND,
    409: ExitCode.CONFLICT,
    422: ExitCode.CONFLICT,
}


def exit_code_for_status(status: int) -> ExitCode:
    """The exit code for an HTTP error status."""
    return _BY_STATUS.get(status, ExitCode.ERROR)


def exit_codes_help() -> str:
    """The exit code table as ``saga --help`` prints it (``\\b``: click keeps the lines)."""
    lines = [f"  {int(code)}  {text}" for code, text in EXIT_CODES.items()]
    return "\b\nExit codes (with --json, errors are JSON on stderr):\n" + "\n".join(lines)


class CliFailure(Exception):  # noqa: N818 - a command's outcome, shown to a person or a script
    """A command failed in a way a script can act on: a message, the HTTP status (None when
    there was no answer) and the exit code."""

    def __init__(self, message: str, *, exit_code: ExitCode, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status

    @classmethod
    def from_status(cls, status: int, message: str) -> CliFailure:
        """A failure for an HTTP error answer."""
        return cls(message, exit_code=exit_code_for_status(status), status=status)


def error_json(message: str, *, status: int | None, exit_code: int) -> str:
    """An error as ``--json`` prints it on stderr: one line, always these three keys."""
    return json.dumps({"error": message, "status": status, "exit_code": exit_code})


JSON_ERRORS = "saga.json_errors"
"""The click context's ``meta`` key set when a command was given ``--json``."""
