"""Token, NKey and .creds (JWT) authentication against a real nats-server."""

from __future__ import annotations

import os
from pathlib import Path

import nkeys
import pytest

from saga.errors import TransportError
from saga.protocol import Reply
from saga.transport.nats import NatsTransport
from saga.transport.nats_server import NatsServer
from saga.transport.security import NatsSecurity
from tests.security.certs import Pki
from tests.security.jwt import Operator
from tests.security.nats_auth import Charges, round_trip, tls_block
from tests.transport.replies import ReplyCollector

pytestmark = pytest.mark.nats

TOKEN = "tok-s3cr3t-8hG2d"


def new_user_seed(folder: Path, name: str) -> tuple[Path, str]:
    """A fresh NKey user: its seed file and its public key."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = folder / f"{name}.nk"
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    public: bytes = nkeys.from_seed(bytearray(seed)).public_key
    return path, public.decode()


async def test_token_authentication(pki: Pki) -> None:
    config = tls_block(pki) + f'authorization {{ token: "{TOKEN}" }}\n'
    async with NatsServer(jetstream=False, config=config) as server:
        good = NatsSecurity(token=TOKEN, tls_ca_file=pki.ca)
        reply = await round_trip(server.url, coordinator=good, service=good)
        assert reply == Reply.succeeded({"charged": 42})

        for bad in (
            NatsSecurity(tls_ca_file=pki.ca),
            NatsSecurity(token="tok-guess", tls_ca_file=pki.ca),
        ):
            transport = NatsTransport(server.url, security=bad)
            with pytest.raises(TransportError, match="Authorization Violation") as caught:
                await transport.open(ReplyCollector())
            assert TOKEN not in str(caught.value)
            with pytest.raises(TransportError, match="Authorization Violation"):
                await Charges().participant.serve(server.url, security=bad)


async def test_nkey_authentication(tmp_path: Path) -> None:
    coordinator_seed, coordinator_key = new_user_seed(tmp_path, "coordinator")
    payments_seed, payments_key = new_user_seed(tmp_path, "payments")
    stranger_seed, _ = new_user_seed(tmp_path, "stranger")
    config = f"""
authorization {{
  users = [ {{ nkey: {coordinator_key} }}, {{ nkey: {payments_key} }} ]
}}
"""
    async with NatsServer(jetstream=False, config=config) as server:
        reply = await round_trip(
            server.url,
            coordinator=NatsSecurity(nkey_seed_file=coordinator_seed),
            service=NatsSecurity(nkey_seed_file=payments_seed),
        )
        assert reply == Reply.succeeded({"charged": 42})

        transport = NatsTransport(server.url, security=NatsSecurity(nkey_seed_file=stranger_seed))
        with pytest.raises(TransportError, match="Authorization Violation") as caught:
            await transport.open(ReplyCollector())
        assert stranger_seed.read_text().strip() not in str(caught.value)


async def test_creds_file_authentication(tmp_path: Path) -> None:
    operator = Operator.create()
    account = operator.account("SAGA")
    coordinator = account.user("coordinator").write_creds(tmp_path / "coordinator.creds")
    payments = account.user("payments").write_creds(tmp_path / "payments.creds")
    other = Operator.create().account("OTHER").user("intruder")
    intruder = other.write_creds(tmp_path / "intruder.creds")
    async with NatsServer(jetstream=False, config=operator.server_config([account])) as server:
        reply = await round_trip(
            server.url,
            coordinator=NatsSecurity(creds_file=coordinator),
            service=NatsSecurity(creds_file=payments),
        )
        assert reply == Reply.succeeded({"charged": 42})

        transport = NatsTransport(server.url, security=NatsSecurity(creds_file=intruder))
        with pytest.raises(TransportError, match="cannot connect") as caught:
            await transport.open(ReplyCollector())
        assert other.seed not in str(caught.value)
