"""Several NATS URLs in one string (``--nats``, ``SAGA_NATS_URL``) reach nats-py as a list."""

from __future__ import annotations

import pytest

from saga.errors import TransportError
from saga.transport.nats import NatsTransport, connect_nats, server_urls


@pytest.mark.parametrize(
    ("given", "urls"),
    [
        ("nats://a:4222", ["nats://a:4222"]),
        ("nats://a:4222,nats://b:4222", ["nats://a:4222", "nats://b:4222"]),
        (" nats://a:4222 , ,nats://b:4222,", ["nats://a:4222", "nats://b:4222"]),
        (
            ["nats://a:4222,nats://b:4222", "nats://c:4222"],
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"],
        ),
        (("nats://a:4222",), ["nats://a:4222"]),
        ("", []),
    ],
)
def test_server_urls_splits_on_commas(given: str | list[str], urls: list[str]) -> None:
    assert server_urls(given) == urls


def test_nats_transport_takes_a_comma_separated_string() -> None:
    transport = NatsTransport("nats://a:4222, nats://b:4222")
    assert transport.servers == ["nats://a:4222", "nats://b:4222"]


def test_no_url_at_all_is_refused() -> None:
    with pytest.raises(TransportError, match="at least one server URL"):
        NatsTransport(" , ")


async def test_connect_nats_refuses_an_empty_list() -> None:
    # nats-py would fall back to nats://127.0.0.1:4222: a typo must not reach a stranger.
    with pytest.raises(TransportError, match="no NATS server URL"):
        await connect_nats([], name="nobody")
