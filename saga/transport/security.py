"""NatsSecurity: how the coordinator and participants authenticate to NATS, and over what TLS.

One authentication method at most (user and password, a token, an NKey seed file, or a
``.creds`` JWT file) plus optional TLS (a CA to trust, a client certificate and key for mutual
TLS, the server name to verify). Secrets stay out of ``repr`` and error messages; seed and
credentials files are read by nats-py when it connects, never here.
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from saga.errors import ConfigError

ENV_USER = "SAGA_NATS_USER"
ENV_PASSWORD = "SAGA_NATS_PASSWORD"
ENV_TOKEN = "SAGA_NATS_TOKEN"
ENV_NKEY_SEED_FILE = "SAGA_NATS_NKEY_SEED_FILE"
ENV_CREDS_FILE = "SAGA_NATS_CREDS_FILE"
ENV_TLS_CA = "SAGA_NATS_TLS_CA"
ENV_TLS_CERT = "SAGA_NATS_TLS_CERT"
ENV_TLS_KEY = "SAGA_NATS_TLS_KEY"
ENV_TLS_SERVER_NAME = "SAGA_NATS_TLS_SERVER_NAME"

_SECRETS = frozenset({"password", "token"})
_REDACTED = "<redacted>"


def _no_key_password() -> bytes:
    # Without this callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ConfigError("the NATS TLS key file is encrypted; give an unencrypted key file")


@dataclass(frozen=True, kw_only=True)
class NatsSecurity:
    """NATS credentials and TLS settings, checked when built; ``to_connect_options()`` for nats-py.

    Paths are checked to exist when the object is built. Raises ConfigError when settings
    conflict (two authentication methods, a password without a user, a key without a
    certificate) or a file is missing.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    nkey_seed_file: Path | None = None
    """A file holding an NKey user seed (``SU...``); needs the ``nkeys`` package."""
    creds_file: Path | None = None
    """A ``.creds`` file (user JWT and NKey seed, as ``nsc`` writes it); needs ``nkeys``."""
    tls_ca_file: Path | None = None
    """CA bundle (PEM) that signed the server certificate; the system store when unset."""
    tls_cert_file: Path | None = None
    """Client certificate (PEM) for servers that verify clients (mutual TLS)."""
    tls_key_file: Path | None = None
    tls_server_name: str | None = None
    """The name to verify in the server certificate, when it differs from the URL's host."""

    def __post_init__(self) -> None:
        for name in (
            "nkey_seed_file",
            "creds_file",
            "tls_ca_file",
            "tls_cert_file",
            "tls_key_file",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        for name in ("user", "password", "token", "tls_server_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"NatsSecurity.{name} must be a non-empty string")
        if (self.user is None) != (self.password is None):
            raise ConfigError("NatsSecurity needs both user and password, or neither")
        methods = [
            label
            for label, present in (
                ("user/password", self.user is not None),
                ("token", self.token is not None),
                ("nkey_seed_file", self.nkey_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if present
        ]
        if len(methods) > 1:
            raise ConfigError(
                f"NatsSecurity takes one authentication method, not {' and '.join(methods)}"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("NatsSecurity needs both tls_cert_file and tls_key_file, or neither")
        if self.tls_server_name is not None and not self.uses_tls:
            raise ConfigError("NatsSecurity.tls_server_name needs a TLS CA or client certificate")
        for name in (
            "nkey_seed_file",
            "creds_file",
            "tls_ca_file",
            "tls_cert_file",
            "tls_key_file",
        ):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigError(f"NatsSecurity.{name}: no such file {str(path)!r}")
        if (self.nkey_seed_file or self.creds_file) and importlib.util.find_spec("nkeys") is None:
            raise ConfigError(
                "NKey and .creds authentication need the 'nkeys' package:"
                " pip install 'nats-py[nkeys]'"
            )

    @property
    def uses_tls(self) -> bool:
        """True when a CA or client certificate is set (a ``tls://`` URL also turns TLS on)."""
        return self.tls_ca_file is not None or self.tls_cert_file is not None

    @property
    def is_empty(self) -> bool:
        """True when nothing is set: a plain, unauthenticated connection."""
        return all(getattr(self, f.name) is None for f in fields(self))

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client SSLContext verifying the server (and presenting our certificate), or None."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=str(self.tls_ca_file) if self.tls_ca_file is not None else None,
            )
            if self.tls_cert_file is not None and self.tls_key_file is not None:
                context.load_cert_chain(
                    str(self.tls_cert_file), str(self.tls_key_file), password=_no_key_password
                )
        except (ssl.SSLError, OSError) as exc:
            # The message names the library's reason and the files, never their contents.
            raise ConfigError(
                f"cannot load the NATS TLS files (ca {self.tls_ca_file},"
                f" cert {self.tls_cert_file}, key {self.tls_key_file}): {exc}"
            ) from exc
        return context

    def to_connect_options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's ``Client.connect`` (``user``, ``tls``, ...)."""
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"] = self.user
            options["password"] = self.password
        if self.token is not None:
            options["token"] = self.token
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nkey_seed_file)
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        if self.tls_server_name is not None:
            options["tls_hostname"] = self.tls_server_name
        return options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> NatsSecurity:
        """Read ``SAGA_NATS_*`` variables; empty or unset ones are ignored.

        ``SAGA_NATS_USER``/``SAGA_NATS_PASSWORD``, ``SAGA_NATS_TOKEN``,
        ``SAGA_NATS_NKEY_SEED_FILE``, ``SAGA_NATS_CREDS_FILE``, ``SAGA_NATS_TLS_CA``,
        ``SAGA_NATS_TLS_CERT``, ``SAGA_NATS_TLS_KEY`` and ``SAGA_NATS_TLS_SERVER_NAME``.
        """

        def text(name: str) -> str | None:
            return environ.get(name) or None

        def path(name: str) -> Path | None:
            value = text(name)
            return Path(value).expanduser() if value is not None else None

        return cls(
            user=text(ENV_USER),
            password=text(ENV_PASSWORD),
            token=text(ENV_TOKEN),
            nkey_seed_file=path(ENV_NKEY_SEED_FILE),
            creds_file=path(ENV_CREDS_FILE),
            tls_ca_file=path(ENV_TLS_CA),
            tls_cert_file=path(ENV_TLS_CERT),
            tls_key_file=path(ENV_TLS_KEY),
            tls_server_name=text(ENV_TLS_SERVER_NAME),
        )

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            shown.append(f"{f.name}={_REDACTED if f.name in _SECRETS else repr(value)}")
        return f"NatsSecurity({', '.join(shown)})"

    __str__ = __repr__
