"""ApiConfig: bearer tokens and their roles, token files, allowed hosts, the failed-auth limit,
redacted fields, the stall limit, body limits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from saga.errors import ConfigError

ANY_HOST = "*"
"""In ``allowed_hosts``: serve any ``Host`` (only behind a proxy that checks it)."""


class Role(StrEnum):
    """What a token may do: a viewer reads; an operator also starts sagas, acts on them and
    sends them outside events; a signal token only sends outside events (a webhook's, say),
    and reads nothing."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    SIGNAL = "signal"

    def allows(self, needed: Role) -> bool:
        """Whether a token of this role may use a route that needs ``needed``."""
        return self is Role.OPERATOR or self is needed


@dataclass(frozen=True, kw_only=True)
class Token:
    """A bearer token; ``name`` is who the audit log says acted (never the secret)."""

    secret: str = field(repr=False)
    role: Role
    name: str

    def __post_init__(self) -> None:
        if len(self.secret) < 8 or any(c.isspace() for c in self.secret):
            raise ConfigError(f"token {self.name!r}: a secret needs 8+ characters, no spaces")
        if not self.name or len(self.name) > 100:
            raise ConfigError("a token needs a name of 1 to 100 characters")

    @classmethod
    def parse(cls, spec: str, role: Role) -> Token:
        """``NAME:SECRET``, or a bare ``SECRET`` named after its role and a short hash."""
        name, sep, secret = spec.partition(":")
        if not sep:
            secret = spec
            name = f"{role.value}-{hashlib.sha256(spec.encode()).hexdigest()[:6]}"
        return cls(secret=secret.strip(), role=role, name=name.strip())


@dataclass(frozen=True, kw_only=True)
class AuthLimit:
    """How many failed authentications one client address may make before it gets 429."""

    failures: int = 10
    """Failures (a wrong or malformed token) within ``window`` that trigger 429."""
    window: timedelta = timedelta(minutes=1)
    """How long a failure counts; 429's Retry-After says when the oldest one expires."""

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ConfigError("AuthLimit.failures must be at least 1")
        if self.window <= timedelta(0):
            raise ConfigError("AuthLimit.window must be positive")


def normal_host(name: str) -> str:
    """A host name as ``Host`` headers are compared: lower case, IPv6 without brackets.

    Raises ConfigError for an empty name, a port or a URL (a host name is just the name).
    """
    host = name.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif host.count(":") == 1:
        raise ConfigError(f"allowed host {name!r}: give a host name without a port")
    if not host or any(c.isspace() or c in "/@[]" for c in host):
        raise ConfigError(f"allowed host {name!r} is not a host name")
    return host


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """How the HTTP API is served. With no tokens, anyone may do anything: loopback dev only."""

    tokens: tuple[Token, ...] = ()
    redact: frozenset[str] = frozenset()
    """Field names (any depth, case-insensitive) whose values responses replace by "***"."""
    stall_after: timedelta | None = timedelta(minutes=15)
    """An unfinished saga with no progress for this long counts as stuck (None: never)."""
    max_body_bytes: int = 1024 * 1024
    heartbeat: timedelta = timedelta(seconds=15)
    """How often the event stream sends a keep-alive comment."""
    allowed_hosts: frozenset[str] = frozenset()
    """``Host`` names served besides the loopback ones (localhost, 127.0.0.1, ::1); ``"*"``:
    any. Other names get 421, so a DNS-rebound name cannot reach a token-less API."""
    allow_ip_hosts: bool = False
    """Also serve any IP-address ``Host``: start_http sets it when listening on 0.0.0.0 or ::
    (an IP address cannot be rebound, so it is never a rebinding attack)."""
    auth_limit: AuthLimit = AuthLimit()
    """Failed authentications per client address before 429."""
    access_log: bool = False
    """Log every request (logger ``saga.api.access``, INFO); refusals are logged regardless."""

    def __post_init__(self) -> None:
        secrets = [t.secret for t in self.tokens]
        if len(set(secrets)) != len(secrets):
            raise ConfigError("the same token secret is configured twice")
        if self.stall_after is not None and self.stall_after <= timedelta(0):
            raise ConfigError("stall_after must be positive (or None)")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if self.heartbeat <= timedelta(0):
            raise ConfigError("heartbeat must be positive")
        object.__setattr__(self, "redact", frozenset(f.lower() for f in self.redact))
        hosts = frozenset(h if h == ANY_HOST else normal_host(h) for h in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", hosts)

    @property
    def auth(self) -> bool:
        """Whether requests need a bearer token."""
        return bool(self.tokens)


def tokens_from_specs(
    *, viewers: Iterable[str] = (), operators: Iterable[str] = (), signals: Iterable[str] = ()
) -> tuple[Token, ...]:
    """Tokens from ``NAME:SECRET`` (or bare ``SECRET``) specs, as the command line gives them."""
    tokens = [Token.parse(s, Role.VIEWER) for s in viewers if s.strip()]
    tokens += [Token.parse(s, Role.OPERATOR) for s in operators if s.strip()]
    tokens += [Token.parse(s, Role.SIGNAL) for s in signals if s.strip()]
    return tuple(tokens)


def tokens_from_file(path: Path) -> tuple[Token, ...]:
    """Tokens from a file of ``ROLE:NAME:SECRET`` lines (role ``viewer``, ``operator`` or
    ``signal``).

    Blank lines and lines starting with ``#`` are skipped. Errors name the file and line,
    never the line's text (it holds a secret). Raises ConfigError.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the token file {path}: {reason}") from exc
    tokens = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        role_text, _, rest = line.partition(":")
        name, sep, secret = rest.partition(":")
        where = f"{path}, line {number}"
        # Raised "from None": a mistyped line may be a bare secret, and a chained cause
        # (Role's "'...' is not a valid Role") would print it.
        if not sep or role_text.strip().lower() not in {r.value for r in Role}:
            roles = ", ".join(r.value for r in Role)
            raise ConfigError(f"{where}: expected ROLE:NAME:SECRET, ROLE one of {roles}")
        role = Role(role_text.strip().lower())
        try:
            token = Token(secret=secret.strip(), role=role, name=name.strip())
        except ConfigError as exc:  # its messages name the token, never the secret
            raise ConfigError(f"{where}: {exc}") from None
        tokens.append(token)
    if not tokens:
        raise ConfigError(f"the token file {path} holds no tokens (lines ROLE:NAME:SECRET)")
    return tuple(tokens)
