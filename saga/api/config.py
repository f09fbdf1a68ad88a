"""ApiConfig: bearer tokens and their roles, redacted fields, the stall limit, body limits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum


class Role(StrEnum):
    """What a token may do: a viewer reads; an operator also starts sagas and acts on them."""

    VIEWER = "viewer"
    OPERATOR = "operator"

    def allows(self, needed: Role) -> bool:
        return self is Role.OPERATOR or needed is Role.VIEWER


@dataclass(frozen=True, kw_only=True)
class Token:
    """A bearer token; ``name`` is who the audit log says acted (never the secret)."""

    secret: str = field(repr=False)
    role: Role
    name: str

    def __post_init__(self) -> None:
        if len(self.secret) < 8 or any(c.isspace() for c in self.secret):
            raise ValueError(f"token {self.name!r}: a secret needs 8+ characters, no spaces")
        if not self.name or len(self.name) > 100:
            raise ValueError("a token needs a name of 1 to 100 characters")

    @classmethod
    def parse(cls, spec: str, role: Role) -> Token:
        """``NAME:SECRET``, or a bare ``SECRET`` named after its role and a short hash."""
        name, sep, secret = spec.partition(":")
        if not sep:
            secret = spec
            name = f"{role.value}-{hashlib.sha256(spec.encode()).hexdigest()[:6]}"
        return cls(secret=secret.strip(), role=role, name=name.strip())


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

    def __post_init__(self) -> None:
        secrets = [t.secret for t in self.tokens]
        if len(set(secrets)) != len(secrets):
            raise ValueError("the same token secret is configured twice")
        if self.stall_after is not None and self.stall_after <= timedelta(0):
            raise ValueError("stall_after must be positive (or None)")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.heartbeat <= timedelta(0):
            raise ValueError("heartbeat must be positive")
        object.__setattr__(self, "redact", frozenset(f.lower() for f in self.redact))

    @property
    def auth(self) -> bool:
        """Whether requests need a bearer token."""
        return bool(self.tokens)


def tokens_from_specs(
    *, viewers: Iterable[str] = (), operators: Iterable[str] = ()
) -> tuple[Token, ...]:
    """Tokens from ``NAME:SECRET`` (or bare ``SECRET``) specs, as the command line gives them."""
    tokens = [Token.parse(s, Role.VIEWER) for s in viewers if s.strip()]
    tokens += [Token.parse(s, Role.OPERATOR) for s in operators if s.strip()]
    return tuple(tokens)
