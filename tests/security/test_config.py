"""NatsSecurity as configuration: validation, env vars, nats-py options, a repr without secrets."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from saga.errors import ConfigError
from saga.transport.security import NatsSecurity
from tests.security.certs import Pki

PASSWORD = "pw-Zq8x!never-printed"
TOKEN = "tok-4f9a-never-printed"
SEED = "SUAOXPAU4IWZPGBM46NZZMCXMWNH6VYBCABIJQ2T5HYH2IFYJPGC46DKAA"


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "user.nk"
    path.write_text(SEED + "\n")
    return path


def test_empty_is_a_plain_connection() -> None:
    security = NatsSecurity()
    assert security.is_empty
    assert not security.uses_tls
    assert security.to_connect_options() == {}
    assert repr(security) == "NatsSecurity()"


def test_user_and_password_options() -> None:
    security = NatsSecurity(user="coordinator", password=PASSWORD)
    assert security.to_connect_options() == {"user": "coordinator", "password": PASSWORD}


def test_token_options() -> None:
    assert NatsSecurity(token=TOKEN).to_connect_options() == {"token": TOKEN}


def test_nkey_seed_and_creds_files_are_passed_as_paths(seed_file: Path, tmp_path: Path) -> None:
    # nats-py reads the files itself when it connects: the seed never sits in our objects.
    assert NatsSecurity(nkey_seed_file=seed_file).to_connect_options() == {
        "nkeys_seed": str(seed_file)
    }
    creds = tmp_path / "user.creds"
    creds.write_text("not read here")
    assert NatsSecurity(creds_file=creds).to_connect_options() == {"user_credentials": str(creds)}


def test_tls_options_build_a_verifying_context(pki: Pki) -> None:
    security = NatsSecurity(
        tls_ca_file=pki.ca,
        tls_cert_file=pki.client.cert,
        tls_key_file=pki.client.key,
        tls_server_name="nats.saga.test",
    )
    options = security.to_connect_options()
    assert set(options) == {"tls", "tls_hostname"}
    context = options["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert options["tls_hostname"] == "nats.saga.test"
    assert security.uses_tls


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"user": "u"}, "both user and password"),
        ({"password": PASSWORD}, "both user and password"),
        ({"user": "u", "password": PASSWORD, "token": TOKEN}, "one authentication method"),
        ({"user": "", "password": PASSWORD}, "non-empty"),
        ({"token": ""}, "non-empty"),
        ({"tls_server_name": "nats.saga.test"}, "needs a TLS CA"),
        ({"nkey_seed_file": Path("/no/such/seed.nk")}, "no such file"),
        ({"creds_file": Path("/no/such/user.creds")}, "no such file"),
        ({"tls_ca_file": Path("/no/such/ca.pem")}, "no such file"),
    ],
)
def test_invalid_settings_are_refused_when_built(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as caught:
        NatsSecurity(**kwargs)  # type: ignore[arg-type]
    assert PASSWORD not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_token_and_nkey_together_are_refused(seed_file: Path) -> None:
    with pytest.raises(ConfigError, match="token and nkey_seed_file"):
        NatsSecurity(token=TOKEN, nkey_seed_file=seed_file)


def test_a_certificate_needs_its_key(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file"):
        NatsSecurity(tls_ca_file=pki.ca, tls_cert_file=pki.client.cert)
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file"):
        NatsSecurity(tls_key_file=pki.client.key)


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path, pki: Pki) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(ConfigError, match="cannot load the NATS TLS files"):
        NatsSecurity(tls_ca_file=garbage).to_connect_options()
    # The key of another certificate does not match this one.
    with pytest.raises(ConfigError, match="cannot load the NATS TLS files"):
        NatsSecurity(tls_cert_file=pki.client.cert, tls_key_file=pki.server.key).ssl_context()


def test_repr_and_str_never_show_secrets(seed_file: Path) -> None:
    for security in (
        NatsSecurity(user="coordinator", password=PASSWORD),
        NatsSecurity(token=TOKEN),
        NatsSecurity(nkey_seed_file=seed_file),
    ):
        for text in (repr(security), str(security), f"{security!r}", f"{[security]}"):
            assert PASSWORD not in text
            assert TOKEN not in text
            assert SEED not in text
    shown = repr(NatsSecurity(user="coordinator", password=PASSWORD))
    assert shown == "NatsSecurity(user='coordinator', password=<redacted>)"
    assert repr(NatsSecurity(token=TOKEN)) == "NatsSecurity(token=<redacted>)"


def test_from_env_reads_every_variable(pki: Pki, seed_file: Path) -> None:
    tls = {
        "SAGA_NATS_TLS_CA": str(pki.ca),
        "SAGA_NATS_TLS_CERT": str(pki.client.cert),
        "SAGA_NATS_TLS_KEY": str(pki.client.key),
        "SAGA_NATS_TLS_SERVER_NAME": "nats.saga.test",
    }
    security = NatsSecurity.from_env(
        {"SAGA_NATS_USER": "coordinator", "SAGA_NATS_PASSWORD": PASSWORD, **tls}
    )
    assert security == NatsSecurity(
        user="coordinator",
        password=PASSWORD,
        tls_ca_file=pki.ca,
        tls_cert_file=pki.client.cert,
        tls_key_file=pki.client.key,
        tls_server_name="nats.saga.test",
    )
    assert NatsSecurity.from_env({"SAGA_NATS_TOKEN": TOKEN}).token == TOKEN
    assert NatsSecurity.from_env({"SAGA_NATS_NKEY_SEED_FILE": str(seed_file)}).nkey_seed_file == (
        seed_file
    )
    assert NatsSecurity.from_env({"SAGA_NATS_CREDS_FILE": str(seed_file)}).creds_file == seed_file


def test_from_env_ignores_empty_and_unrelated_variables() -> None:
    security = NatsSecurity.from_env({"SAGA_NATS_USER": "", "SAGA_NATS_TOKEN": "", "HOME": "/x"})
    assert security.is_empty


def test_from_env_checks_what_it_reads() -> None:
    with pytest.raises(ConfigError, match="one authentication method"):
        NatsSecurity.from_env(
            {"SAGA_NATS_USER": "u", "SAGA_NATS_PASSWORD": PASSWORD, "SAGA_NATS_TOKEN": TOKEN}
        )


def test_from_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SAGA_NATS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SAGA_NATS_TOKEN", TOKEN)
    assert NatsSecurity.from_env() == NatsSecurity(token=TOKEN)


def test_is_frozen() -> None:
    security = NatsSecurity(token=TOKEN)
    with pytest.raises(AttributeError):
        security.token = "other"  # type: ignore[misc]


def test_an_encrypted_key_is_refused_without_prompting(tmp_path: Path, pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-passphrase"),
        )
    )
    security = NatsSecurity(tls_cert_file=pki.client.cert, tls_key_file=encrypted)
    with pytest.raises(ConfigError, match="encrypted"):
        security.ssl_context()
