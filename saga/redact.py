"""Hiding credentials in URLs, DSNs and log lines: the one place every printed URL goes through.

A NATS URL may carry ``user:password@`` or a bare token (``nats://TOKEN@host``); a database URL
``user:password@`` or ``?password=...``; a libpq DSN ``password=...``. ``redact_url`` hides all
of them and keeps the rest (scheme, user name where it is not a secret, host, port, database),
so a line still says where it points. ``redact_text`` does the same to every URL inside a
message, and ``RedactingFilter`` applies it to log records.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "***"
"""What a hidden credential is replaced with (SQLAlchemy's own marker)."""

_USER_IS_NOT_SECRET = ("postgres", "sqlite", "mysql", "mariadb", "oracle", "mssql")
"""Schemes whose bare ``user@`` is a role name; elsewhere (``nats://TOKEN@``) it is a secret."""

# ``scheme://userinfo@``: the user info runs to the last ``@`` before the path, so a password
# holding an unescaped ``@`` is hidden whole (as urllib's ``netloc.rpartition("@")`` parses it).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*)://(?P<userinfo>[^\s/?#]*)@")
_SECRET_PARAM = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|sslpassword|pass|token|auth_token|access_token|secret"
    r"|api_key|apikey)\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^&\s,;'\"]+)",
    re.IGNORECASE,
)


def _hide_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    user, has_password, _ = userinfo.partition(":")
    if has_password:
        return f"{scheme}://{user}:{HIDDEN}@"
    if scheme.lower().startswith(_USER_IS_NOT_SECRET):
        return match[0]
    return f"{scheme}://{HIDDEN}@"


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL and ``password=``-style pair in it hidden."""
    text = _USERINFO.sub(_hide_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{HIDDEN}", text)


def redact_url(url: str) -> str:
    """A URL, a comma-separated list of URLs or a DSN with its credentials hidden, for output.

    >>> redact_url("postgresql://app:S3cret@db:5432/saga")
    'postgresql://app:***@db:5432/saga'
    >>> redact_url("nats://TOKEN@127.0.0.1:4222,nats://u:p@10.0.0.2:4222")
    'nats://***@127.0.0.1:4222,nats://u:***@10.0.0.2:4222'
    """
    return redact_text(url)


class RedactingFilter(logging.Filter):
    """A logging filter that hides credentials in every record's message, arguments included.

    Installed on the handlers the ``saga`` command sets up, so a driver's or library's log line
    that quotes a URL (a reconnect message, a failed connect) prints no password either.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = redact_text(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            # The traceback is formatted later by the handler; format it here, hidden.
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a ``RedactingFilter`` to every handler of ``logger`` (the root logger by default)."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
