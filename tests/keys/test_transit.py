"""TransitKeyring: the Keyring conformance suite on custody transit, then its failure
modes, each of which must name the Vault path and the reason, never the token."""

from __future__ import annotations

import base64
import uuid
from types import SimpleNamespace
from typing import Any

import hvac
import hvac.exceptions
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.keys import conformance
from tests.support.bao import BaoDevServer, free_port, vault_session
from tokend.keys.keyring import PhasedKeyring
from tokend.keys.transit import TransitKeyring, parse_transit_signature
from tokend.vault.client import VaultError, make_vault_client

# -- the Keyring conformance suite (tests/keys/conformance.py) on custody transit --------


def _transit_case(bao: BaoDevServer, alg: str) -> conformance.KeyringCase:
    name = f"conf-{alg.lower()}-{uuid.uuid4().hex[:8]}"
    session = vault_session(bao.addr, bao.token)
    client = session.client
    clock = conformance.Clock()

    def make() -> PhasedKeyring:
        return TransitKeyring(client, key_name=name, algorithm=alg, create_if_missing=True,
                              lifecycle=conformance.LIFE, clock=clock, transport=session.transport)

    # As an operator would rotate, outside tokend: phases come from Vault's metadata.
    rotate = lambda: client.secrets.transit.rotate_key(name)  # noqa: E731

    def refuse_old() -> None:
        newest = client.secrets.transit.read_key(name)["data"]["latest_version"]
        client.secrets.transit.update_key_configuration(name, min_encryption_version=newest)

    return conformance.KeyringCase(alg, clock, make, rotate, make(), vault_clock=True,
                                   refuse_old=refuse_old, transport=session.transport)


@pytest.fixture
def make_case(bao: BaoDevServer) -> conformance.CaseFactory:
    return lambda alg: _transit_case(bao, alg)


class TestTransitConformance(conformance.KeyringConformance):
    pass


# -- what only custody transit has --------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def token_with_policy(bao: BaoDevServer, hcl: str) -> str:
    root = bao.client()
    policy = unique("policy")
    root.sys.create_or_update_policy(policy, hcl)
    answer = root.auth.token.create(policies=[policy], ttl="10m", no_default_policy=True)
    return str(answer["auth"]["client_token"])


def create_key(bao: BaoDevServer, key_type: str) -> str:
    name = unique(key_type)
    bao.client().secrets.transit.create_key(name, key_type=key_type)
    return name


def load_error(keyring: TransitKeyring) -> VaultError:
    with pytest.raises(VaultError) as caught:
        keyring.load()
    return caught.value


def test_unreachable_vault_names_the_address() -> None:
    addr = f"http://127.0.0.1:{free_port()}"  # nobody listens there any more
    secret = "hvs.do-not-print-me"
    keyring = TransitKeyring(make_vault_client(addr, secret, timeout=2), key_name="k")
    err = load_error(keyring)
    assert str(err).startswith(f"cannot reach Vault at {addr}: ")
    assert "transit/keys/k" in str(err) and err.reason == "unreachable"
    assert secret not in str(err)


def test_token_that_cannot_read_the_key(bao: BaoDevServer) -> None:
    name = create_key(bao, "ecdsa-p256")
    token = token_with_policy(bao, f'path "transit/sign/{name}" {{ capabilities = ["update"] }}')
    err = load_error(TransitKeyring(make_vault_client(bao.addr, token), key_name=name))
    assert f"Vault denied read on transit/keys/{name}: the token lacks permission" in str(err)
    assert "docs/vault.md" in str(err)
    assert err.path == f"transit/keys/{name}" and err.status == 403 and err.reason == "denied"
    assert token not in str(err)


def test_invalid_token_is_denied(bao: BaoDevServer) -> None:
    name = create_key(bao, "ecdsa-p256")
    err = load_error(TransitKeyring(make_vault_client(bao.addr, "bogus-token"), key_name=name))
    assert err.reason == "denied" and f"transit/keys/{name}" in str(err)
    assert "bogus-token" not in str(err)


def test_token_that_can_read_but_not_sign(bao: BaoDevServer) -> None:
    name = create_key(bao, "ecdsa-p256")
    token = token_with_policy(bao, f'path "transit/keys/{name}" {{ capabilities = ["read"] }}')
    keyring = TransitKeyring(make_vault_client(bao.addr, token), key_name=name)
    keyring.load()  # reading is allowed
    with pytest.raises(VaultError) as caught:
        keyring.check_sign_permission()
    assert f"Vault denied sign on transit/sign/{name}" in str(caught.value)
    assert caught.value.path == f"transit/sign/{name}"
    assert token not in str(caught.value)


@pytest.mark.parametrize(
    ("algorithm", "key_type"),
    [("ES256", "ecdsa-p256"), ("RS256", "rsa-2048"), ("PS256", "rsa-4096"), ("EdDSA", "ed25519")],
)
def test_least_privilege_token_passes_the_probe(
    bao: BaoDevServer, algorithm: str, key_type: str
) -> None:
    name = create_key(bao, key_type)
    token = token_with_policy(
        bao,
        f'path "transit/keys/{name}" {{ capabilities = ["read"] }}\n'
        f'path "transit/sign/{name}" {{ capabilities = ["update"] }}',
    )
    keyring = TransitKeyring(make_vault_client(bao.addr, token), key_name=name, algorithm=algorithm)
    keyring.load()
    keyring.check_sign_permission()  # signs and verifies locally


def test_missing_key_without_create(bao: BaoDevServer) -> None:
    name = unique("absent")
    err = load_error(TransitKeyring(bao.client(), key_name=name))
    assert f"transit key {name!r} does not exist at transit/keys/{name}" in str(err)
    assert "create_if_missing" in str(err) and "type=ecdsa-p256" in str(err)
    assert err.reason == "not_found"
    with pytest.raises(hvac.exceptions.InvalidPath):  # and nothing was created
        bao.client().secrets.transit.read_key(name)


@pytest.mark.parametrize(
    ("algorithm", "rsa_bits", "key_type"),
    [("ES256", 2048, "ecdsa-p256"), ("RS256", 3072, "rsa-3072"), ("EdDSA", 2048, "ed25519")],
)
def test_create_if_missing_creates_the_right_type(
    bao: BaoDevServer, algorithm: str, rsa_bits: int, key_type: str
) -> None:
    name = unique("created")
    keyring = TransitKeyring(
        bao.client(), key_name=name, algorithm=algorithm, rsa_bits=rsa_bits, create_if_missing=True
    )
    keyring.load()
    assert bao.client().secrets.transit.read_key(name)["data"]["type"] == key_type
    assert keyring.active().kid == f"{name}-v1"


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [("rsa-2048", "ES256"), ("ecdsa-p256", "RS256"), ("ed25519", "PS256"), ("ecdsa-p384", "ES256")],
)
def test_type_mismatch_is_refused(bao: BaoDevServer, key_type: str, algorithm: str) -> None:
    name = create_key(bao, key_type)
    keyring = TransitKeyring(
        bao.client(), key_name=name, algorithm=algorithm, create_if_missing=True
    )
    err = load_error(keyring)
    assert f"transit key at transit/keys/{name} is of type {key_type}" in str(err)
    assert algorithm in str(err)


def test_unmounted_engine(bao: BaoDevServer) -> None:
    err = load_error(TransitKeyring(bao.client(), mount="no-such-transit", key_name="k"))
    assert "no transit engine is mounted at no-such-transit/" in str(err)
    assert err.reason == "no_mount"


def test_bad_settings_fail_at_construction(bao: BaoDevServer) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        TransitKeyring(bao.client(), algorithm="HS256")
    with pytest.raises(ValueError, match="rsa_bits"):
        TransitKeyring(bao.client(), algorithm="RS256", rsa_bits=1024)


# -- signature parsing: the version pin fails closed -----------------------------------


def test_signature_of_another_version_is_refused() -> None:
    with pytest.raises(VaultError, match="version 2, not the pinned version 1"):
        parse_transit_signature("vault:v2:AAAA", expected_version=1, urlsafe=False)


@pytest.mark.parametrize(
    "value",
    [None, "", "v1:AAAA", "vault:v1:", "vault:vx:AAAA", "vault:v1:A", "vault:v1:AA AA", 42],
)
def test_malformed_signatures_are_refused(value: Any) -> None:
    with pytest.raises(VaultError):
        parse_transit_signature(value, expected_version=1, urlsafe=False)


def test_signature_decoding() -> None:
    raw = bytes(range(250, 256)) + b"\xfb\xff"
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert parse_transit_signature(f"vault:v3:{std}", expected_version=3, urlsafe=False) == raw
    assert parse_transit_signature(f"vault:v3:{url}", expected_version=3, urlsafe=True) == raw


def test_sign_refuses_an_answer_for_another_version(
    bao: BaoDevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = bao.client()
    keyring = TransitKeyring(client, key_name=unique("pin"), create_if_missing=True)
    keyring.load()
    real_sign = client.secrets.transit.sign_data

    def sign_as_v2(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = real_sign(*args, **kwargs)
        answer["data"]["signature"] = answer["data"]["signature"].replace("vault:v1:", "vault:v2:")
        return answer

    monkeypatch.setattr(client.secrets.transit, "sign_data", sign_as_v2)
    with pytest.raises(VaultError, match="pinned version 1"):
        keyring.sign(keyring.active(), b"a.b")


# -- a sealed Vault, on a server of its own (the harness restart is checked too) ---------


def test_sealed_vault_and_harness_restart() -> None:
    with BaoDevServer() as own:
        name = create_key(own, "ecdsa-p256")
        keyring = TransitKeyring(own.client(), key_name=name)
        keyring.load()
        own.client().sys.seal()
        err = load_error(keyring)
        assert err.reason == "sealed" and "is sealed" in str(err) and own.addr in str(err)
        assert keyring.active().kid == f"{name}-v1"  # the last good snapshot stays

        addr, token = own.addr, own.token
        own.restart()  # -dev keeps nothing: same address and token, transit empty
        assert (own.addr, own.token) == (addr, token)
        assert own.client().sys.is_sealed() is False
        assert isinstance(own.client(), hvac.Client)
        assert load_error(TransitKeyring(own.client(), key_name=name)).reason == "not_found"


# -- key data that must not be published (a fake client: Vault would not send these) ---


def fake_client(data: dict[str, Any]) -> Any:
    transit = SimpleNamespace(read_key=lambda name, mount_point: {"data": data})
    return SimpleNamespace(url="http://127.0.0.1:1", secrets=SimpleNamespace(transit=transit))


def ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


PEM = ec_pem()


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"keys": {"0": {}}}, "unreadable key version '0'"),
        ({"derived": True}, "derived key"),
        ({"latest_version": 2}, "without the latest one"),
        ({"keys": {"1": {"public_key": "not a pem"}}}, "unreadable public key"),
        ({"keys": {"1": {"public_key": ""}}}, "no public key"),
        ({"keys": None}, "without key versions"),
        ({"keys": {"1": {"public_key": PEM}}}, "no usable creation_time for version 1"),
        ({"keys": {"1": {"public_key": PEM, "creation_time": "2026-01-01T00:00:00"}}},
         "no usable creation_time"),  # a time without a zone is no time
    ],
)
def test_odd_key_data_is_refused(change: dict[str, Any], complaint: str) -> None:
    version = {"public_key": PEM, "creation_time": "2026-11-30T03:00:44.675597968Z"}
    data = {"type": "ecdsa-p256", "latest_version": 1, "keys": {"1": version}}
    keyring = TransitKeyring(fake_client({**data, **change}), key_name="odd")
    err = load_error(keyring)
    assert complaint in str(err) and err.reason == "bad_answer"
    assert "transit/keys/odd" in str(err)
