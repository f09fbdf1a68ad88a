"""Just enough NATS decentralised auth for tests: operator, account and user JWTs, .creds files.

NATS JWTs are ``base64url(header).base64url(claims).base64url(signature)`` with an Ed25519
NKey signature (``alg: ed25519-nkey``); the operator signs accounts, an account signs its users.
The server runs in operator mode with a memory resolver preloaded with the account JWTs.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class _Key:
    seed: str
    public: str

    @classmethod
    def create(cls, prefix: int) -> _Key:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        public: bytes = nkeys.from_seed(bytearray(seed)).public_key
        return cls(seed=seed.decode(), public=public.decode())

    def sign_jwt(self, subject: str, name: str, nats: dict[str, Any]) -> str:
        header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
        claims = {
            "jti": uuid.uuid4().hex.upper(),
            "iat": int(time.time()),
            "iss": self.public,
            "name": name,
            "sub": subject,
            "nats": {**nats, "version": 2},
        }
        body = _b64(json.dumps(claims).encode())
        signature: bytes = nkeys.from_seed(bytearray(self.seed.encode())).sign(
            f"{header}.{body}".encode()
        )
        return f"{header}.{body}.{_b64(signature)}"


@dataclass(frozen=True)
class User:
    name: str
    key: _Key
    jwt: str

    @property
    def seed(self) -> str:
        return self.key.seed

    def write_creds(self, path: Path) -> Path:
        """A ``.creds`` file as ``nsc`` writes it: the user JWT, then the user's NKey seed."""
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.seed}\n"
            "------END USER NKEY SEED------\n"
        )
        path.chmod(0o600)
        return path


@dataclass(frozen=True)
class Account:
    name: str
    key: _Key
    jwt: str

    def user(self, name: str) -> User:
        key = _Key.create(nkeys.PREFIX_BYTE_USER)
        nats = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
        return User(name=name, key=key, jwt=self.key.sign_jwt(key.public, name, nats))


@dataclass(frozen=True)
class Operator:
    key: _Key
    jwt: str

    @classmethod
    def create(cls) -> Operator:
        key = _Key.create(nkeys.PREFIX_BYTE_OPERATOR)
        return cls(key=key, jwt=key.sign_jwt(key.public, "saga-test", {"type": "operator"}))

    def account(self, name: str) -> Account:
        key = _Key.create(nkeys.PREFIX_BYTE_ACCOUNT)
        limits = {
            "subs": -1,
            "data": -1,
            "payload": -1,
            "imports": -1,
            "exports": -1,
            "wildcards": True,
            "conn": -1,
            "leaf": -1,
        }
        nats = {"type": "account", "limits": limits}
        return Account(name=name, key=key, jwt=self.key.sign_jwt(key.public, name, nats))

    def server_config(self, accounts: list[Account]) -> str:
        """nats-server configuration: operator mode, accounts preloaded in a memory resolver."""
        preload = "\n".join(f"  {a.key.public}: {a.jwt}" for a in accounts)
        return f"operator: {self.jwt}\nresolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
