"""TLS and passwords against a real nats-server: who gets in, who does not, and what is logged."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest

from saga.errors import TransportError
from saga.protocol import Reply
from saga.transport.nats import NatsTransport
from saga.transport.nats_server import NatsServer
from saga.transport.security import NatsSecurity
from tests.security.certs import Pki
from tests.security.nats_auth import Charges, round_trip, tls_block
from tests.transport.replies import ReplyCollector

pytestmark = pytest.mark.nats

COORDINATOR_PASSWORD = "coord-pw-7Hk2!right"
PAYMENTS_PASSWORD = "pay-pw-Q9z4!right"
WRONG_PASSWORD = "wrong-pw-X1c3!guess"


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[NatsServer]:
    """TLS required, client certificates verified, two users with passwords."""
    config = (
        tls_block(pki, verify_clients=True)
        + f"""
authorization {{
  users = [
    {{ user: coordinator, password: "{COORDINATOR_PASSWORD}" }}
    {{ user: payments, password: "{PAYMENTS_PASSWORD}" }}
  ]
}}
"""
    )
    async with NatsServer(jetstream=False, config=config) as server:
        yield server


def secure(pki: Pki, user: str | None, password: str | None, **tls: object) -> NatsSecurity:
    options: dict[str, object] = {
        "tls_ca_file": pki.ca,
        "tls_cert_file": pki.client.cert,
        "tls_key_file": pki.client.key,
        **tls,
    }
    return NatsSecurity(user=user, password=password, **options)  # type: ignore[arg-type]


async def test_a_configured_coordinator_and_participant_work_end_to_end(
    tls_server: NatsServer, pki: Pki
) -> None:
    reply = await round_trip(
        tls_server.url,
        coordinator=secure(pki, "coordinator", COORDINATOR_PASSWORD),
        service=secure(pki, "payments", PAYMENTS_PASSWORD),
    )
    assert reply == Reply.succeeded({"charged": 42})


async def test_the_server_name_in_the_certificate_is_checked(
    tls_server: NatsServer, pki: Pki
) -> None:
    named = secure(pki, "coordinator", COORDINATOR_PASSWORD, tls_server_name="nats.saga.test")
    reply = await round_trip(
        tls_server.url, coordinator=named, service=secure(pki, "payments", PAYMENTS_PASSWORD)
    )
    assert reply == Reply.succeeded({"charged": 42})

    wrong = secure(pki, "coordinator", COORDINATOR_PASSWORD, tls_server_name="other.saga.test")
    transport = NatsTransport(tls_server.url, security=wrong)
    with pytest.raises(TransportError, match=r"TLS handshake failed.*(hostname|match)"):
        await transport.open(ReplyCollector())


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("coordinator", WRONG_PASSWORD), ("nobody", COORDINATOR_PASSWORD)],
    ids=["no-credentials", "wrong-password", "unknown-user"],
)
async def test_without_the_right_password_nobody_connects(
    tls_server: NatsServer, pki: Pki, user: str | None, password: str | None
) -> None:
    security = secure(pki, user, password)
    transport = NatsTransport(tls_server.url, security=security)
    with pytest.raises(TransportError, match="Authorization Violation"):
        await transport.open(ReplyCollector())
    assert not transport.is_connected
    charges = Charges()
    with pytest.raises(TransportError, match="Authorization Violation"):
        await charges.participant.serve(tls_server.url, security=security)


async def test_a_participant_with_a_wrong_password_never_sees_commands(
    tls_server: NatsServer, pki: Pki
) -> None:
    intruder = Charges()
    with pytest.raises(TransportError):
        await intruder.participant.serve(
            tls_server.url, security=secure(pki, "payments", WRONG_PASSWORD)
        )
    reply = await round_trip(
        tls_server.url,
        coordinator=secure(pki, "coordinator", COORDINATOR_PASSWORD),
        service=secure(pki, "payments", PAYMENTS_PASSWORD),
    )
    assert reply.outcome.value == "succeeded"
    assert intruder.handled == []


@pytest.mark.parametrize(
    "case", ["no-tls-settings", "untrusted-ca", "no-client-cert", "foreign-client-cert"]
)
async def test_tls_mistakes_are_refused(tls_server: NatsServer, pki: Pki, case: str) -> None:
    security = {
        # The system trust store does not know the test CA.
        "no-tls-settings": NatsSecurity(user="coordinator", password=COORDINATOR_PASSWORD),
        "untrusted-ca": secure(pki, "coordinator", COORDINATOR_PASSWORD, tls_ca_file=pki.other_ca),
        "no-client-cert": NatsSecurity(
            user="coordinator", password=COORDINATOR_PASSWORD, tls_ca_file=pki.ca
        ),
        "foreign-client-cert": secure(
            pki,
            "coordinator",
            COORDINATOR_PASSWORD,
            tls_cert_file=pki.stranger.cert,
            tls_key_file=pki.stranger.key,
        ),
    }[case]
    transport = NatsTransport(tls_server.url, security=security)
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.open(ReplyCollector())
    assert not transport.is_connected


async def test_a_plaintext_client_is_refused(tls_server: NatsServer) -> None:
    reader, writer = await asyncio.open_connection(tls_server.host, tls_server.port)
    try:
        info = await asyncio.wait_for(reader.readline(), 10)
        assert info.startswith(b"INFO ")
        assert json.loads(info[5:])["tls_required"] is True
        connect = {"user": "coordinator", "pass": COORDINATOR_PASSWORD, "verbose": False}
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server hangs up
    finally:
        writer.close()
        await writer.wait_closed()
    assert b"PONG" not in answer
    assert b"+OK" not in answer


async def test_no_secret_reaches_the_logs_when_credentials_are_wrong(
    tls_server: NatsServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    security = secure(pki, "coordinator", WRONG_PASSWORD)
    transport = NatsTransport(tls_server.url, security=security)
    with pytest.raises(TransportError) as caught:
        await transport.open(ReplyCollector())
    with pytest.raises(TransportError) as caught_serving:
        await Charges().participant.serve(tls_server.url, security=security)
    logged = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "Authorization Violation" in logged, "the failure itself is logged"
    texts = [logged, str(caught.value), str(caught_serving.value), repr(security)]
    for text in texts:
        assert WRONG_PASSWORD not in text
        assert COORDINATOR_PASSWORD not in text
        assert PAYMENTS_PASSWORD not in text


async def test_a_password_in_the_url_is_not_repeated_in_errors(tls_server: NatsServer) -> None:
    url = f"nats://coordinator:{WRONG_PASSWORD}@{tls_server.host}:{tls_server.port}"
    transport = NatsTransport(url)
    with pytest.raises(TransportError) as caught:
        await transport.open(ReplyCollector())
    assert WRONG_PASSWORD not in str(caught.value)
    assert f"{tls_server.host}:{tls_server.port}" in str(caught.value)
