"""Custody kv: the Keyring conformance suite, then what goes beyond it: the stored form,
strict loading, check-and-set, the documented policies, and signing while Vault is away."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import hvac
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.keys import conformance
from tests.keys.vault_docs import doc_block, doc_blocks, token_with
from tests.support.bao import BaoDevServer
from tokend.keys import localkeys
from tokend.keys.keyring import PhasedKeyring, SigningKey
from tokend.keys.kv import KvKeyring
from tokend.keys.lifecycle import Lifecycle, Phase
from tokend.keys.transit import TransitKeyring
from tokend.tokens.batching import SignBatcher
from tokend.tokens.errors import SigningUnavailable
from tokend.tokens.input_rules import AccessTokenSpec
from tokend.tokens.minting import TokenMinter
from tokend.vault.client import VaultError, make_vault_client
from tokend_client import LocalVerifier

ALGS = ("ES256", "RS256", "PS256", "EdDSA")
LIFE = Lifecycle(propagation_delay=10, retire_after=100)
MINT_SPEC = AccessTokenSpec(subject="alice", audience=("orders",), scopes=(), claims={},
                            ttl=300, client_id="kv-test")


# -- the Keyring conformance suite (tests/keys/conformance.py) on custody kv -------------


def _kv_case(bao: BaoDevServer, alg: str) -> conformance.KeyringCase:
    name = f"conf-{alg.lower()}-{uuid.uuid4().hex[:8]}"
    client = make_vault_client(bao.addr, bao.token)  # -dev mounts KV version 2 at secret/
    clock = conformance.Clock()

    def make() -> PhasedKeyring:
        return KvKeyring(client, key_name=name, algorithm=alg, create_if_missing=True,
                         lifecycle=conformance.LIFE, clock=clock)

    def rotate() -> None:  # `tokend keys rotate`, from another process
        operator = make()
        operator.load()
        operator.rotate()

    return conformance.KeyringCase(alg, clock, make, rotate, make(), vault_clock=False)


@pytest.fixture
def make_case(bao: BaoDevServer) -> conformance.CaseFactory:
    return lambda alg: _kv_case(bao, alg)


class TestKvConformance(conformance.KeyringConformance):
    pass


# -- what only custody kv has -------------------------------------------------------------


def unique(prefix: str = "kv") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stored(bao: BaoDevServer, name: str) -> dict[str, Any]:
    answer = bao.client().secrets.kv.v2.read_secret_version(
        path=f"tokend/keys/{name}", raise_on_deleted_version=True)
    return answer["data"]["data"]  # type: ignore[no-any-return]


def write(bao: BaoDevServer, name: str, document: dict[str, Any]) -> None:
    bao.client().secrets.kv.v2.create_or_update_secret(path=f"tokend/keys/{name}",
                                                       secret=document)


def load_error(keyring: KvKeyring) -> VaultError:
    with pytest.raises(VaultError) as caught:
        keyring.load()
    return caught.value


# -- private JWKs ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_private_jwk_round_trip(alg: str) -> None:
    key = localkeys.generate(alg)
    jwk = localkeys.private_jwk(key)
    assert "d" in jwk and not {"kid", "alg", "use"} & set(jwk)
    again = localkeys.load_private_jwk(json.loads(json.dumps(jwk)), alg)
    assert localkeys.private_jwk(again) == jwk


@pytest.mark.parametrize(
    ("alg", "change", "complaint"),
    [
        ("ES256", {"x": "AAAA"}, "do not belong"),  # public half of another key
        ("ES256", {"crv": "P-384"}, "crv P-256"),
        ("ES256", {"d": "AA=="}, "unpadded base64url"),
        ("ES256", {"d": "A*A"}, "not base64url"),
        ("ES256", {"d": None}, "missing"),
        ("RS256", {"kty": "EC"}, "kty RSA"),
        ("PS256", {"q": "AQAB"}, "valid key"),
        ("EdDSA", {"d": "AAAA"}, "32 octets"),
        ("EdDSA", {"kty": "EC"}, "kty OKP"),
    ],
)
def test_unusable_private_jwks_are_refused(alg: str, change: dict[str, Any],
                                           complaint: str) -> None:
    jwk = {**localkeys.private_jwk(localkeys.generate(alg)), **change}
    with pytest.raises(localkeys.KeyDataError, match=complaint) as caught:
        localkeys.load_private_jwk(jwk, alg)
    for secret in ("d", "p", "q"):  # the message never quotes key material
        if isinstance(jwk.get(secret), str) and len(jwk[secret]) > 8:
            assert jwk[secret] not in str(caught.value)


def test_short_rsa_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with pytest.raises(localkeys.KeyDataError, match="1024 bits"):
        localkeys.load_private_jwk(localkeys.private_jwk(small), "RS256")


# -- what is stored ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_the_stored_form(bao: BaoDevServer) -> None:
    name = unique()
    keyring = KvKeyring(bao.client(), key_name=name, algorithm="EdDSA", lifecycle=LIFE)
    keyring.init()
    document = stored(bao, name)
    assert document["algorithm"] == "EdDSA" and set(document["versions"]) == {"1"}
    version = document["versions"]["1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", version["created"])
    assert set(version["jwk"]) == {"kty", "crv", "x", "d"}
    public = keyring.jwks()["keys"][0]
    assert public["x"] == version["jwk"]["x"] and "d" not in public


def test_rotation_drops_versions_that_are_gone(bao: BaoDevServer) -> None:
    clock = Clock()
    keyring = KvKeyring(bao.client(), key_name=unique(), lifecycle=LIFE, clock=clock)
    keyring.init()
    keyring.rotate()
    clock.now += LIFE.propagation_delay + LIFE.retire_after + 1  # v1 gone, v2 active
    assert keyring.schedule().phase(1, clock.now) is Phase.GONE
    keyring.rotate()
    assert sorted(keyring.schedule().phases(clock.now).items()) == [
        (2, Phase.ACTIVE), (3, Phase.NEXT)]
    assert set(stored(bao, keyring.key_name)["versions"]) == {"2", "3"}


def test_two_rotations_from_the_same_read_cannot_both_land(bao: BaoDevServer) -> None:
    name = unique()
    first, second = (KvKeyring(bao.client(), key_name=name, lifecycle=LIFE) for _ in "ab")
    first.init()
    second.load()
    first.rotate()
    with pytest.raises(VaultError) as refused:
        second.rotate()
    assert refused.value.reason == "conflict" and "tokend keys list" in str(refused.value)
    assert set(stored(bao, name)["versions"]) == {"1", "2"}  # nothing was written
    second.load()
    assert second.rotate().version == 3  # after looking again it may


def test_replicas_creating_the_key_at_once_share_one(bao: BaoDevServer) -> None:
    name = unique()
    replicas = [KvKeyring(bao.client(), key_name=name, create_if_missing=True)
                for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda keyring: keyring.load(), replicas))
    assert len({json.dumps(r.jwks(), sort_keys=True) for r in replicas}) == 1


# -- strict loading ----------------------------------------------------------------------


def valid_version(alg: str = "ES256") -> dict[str, Any]:
    return {"created": "2026-01-01T00:00:00.000000Z",
            "jwk": localkeys.private_jwk(localkeys.generate(alg))}


V = valid_version()


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"algorithm": "RS256", "versions": {"1": V}}, "is for 'RS256', but vault.algorithm "
                                                       "is ES256"),
        ({"algorithm": "ES256"}, "without key versions"),
        ({"algorithm": "ES256", "versions": {}}, "without key versions"),
        ({"algorithm": "ES256", "versions": {"01": V}}, "unreadable key version '01'"),
        ({"algorithm": "ES256", "versions": {"0": V}}, "unreadable key version '0'"),
        ({"algorithm": "ES256", "versions": {"1": "text"}}, "unreadable key version '1'"),
        ({"algorithm": "ES256", "versions": {"1": {**V, "created": "soon"}}},
         "unusable version 1"),
        ({"algorithm": "ES256", "versions": {"1": valid_version("EdDSA")}},
         "unusable version 1 (ES256 needs a JWK with kty EC"),
    ],
)
def test_odd_documents_are_refused(bao: BaoDevServer, document: dict[str, Any],
                                   complaint: str) -> None:
    name = unique()
    write(bao, name, document)
    err = load_error(KvKeyring(bao.client(), key_name=name))
    assert complaint in str(err) and err.reason == "bad_answer", str(err)
    assert f"secret/data/tokend/keys/{name}" in str(err)
    for version in document.get("versions", {}).values():
        if isinstance(version, dict):
            assert version["jwk"]["d"] not in str(err)


def test_missing_key_says_how_to_create_it(bao: BaoDevServer) -> None:
    name = unique()
    err = load_error(KvKeyring(bao.client(), key_name=name))
    assert err.reason == "not_found" and "tokend keys init --custody kv" in str(err)
    with pytest.raises(hvac.exceptions.InvalidPath):  # and nothing was created
        stored(bao, name)


def test_missing_mount_says_how_to_enable_it(bao: BaoDevServer) -> None:
    err = load_error(KvKeyring(bao.client(), key_name="k", mount="no-such-kv"))
    assert err.reason == "no_mount"
    assert "bao secrets enable -path=no-such-kv kv-v2" in str(err)


def test_bad_settings_fail_at_construction(bao: BaoDevServer) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        KvKeyring(bao.client(), algorithm="HS256")
    with pytest.raises(ValueError, match="rsa_bits"):
        KvKeyring(bao.client(), algorithm="RS256", rsa_bits=1024)
    with pytest.raises(ValueError, match="key name"):
        KvKeyring(bao.client(), key_name="a/b")


# -- the policies in docs/vault.md -------------------------------------------------------


def test_documented_kv_policy_reads_and_signs_but_cannot_rotate(bao: BaoDevServer) -> None:
    name = unique()
    KvKeyring(bao.client(), key_name=name).init()
    token = token_with(bao, name, doc_block("# Custody kv"))
    keyring = KvKeyring(make_vault_client(bao.addr, token), key_name=name)
    keyring.load()
    keyring.check_sign_permission()
    with pytest.raises(VaultError) as denied:
        keyring.rotate()
    assert denied.value.reason == "denied" and token not in str(denied.value)


@pytest.mark.parametrize("custody", ["transit", "kv"])
def test_documented_rotation_policies(bao: BaoDevServer, custody: str) -> None:
    name = unique()
    keyring_class = TransitKeyring if custody == "transit" else KvKeyring
    keyring_class(bao.client(), key_name=name).init()
    service = (doc_blocks()[0] if custody == "transit" else doc_block("# Custody kv"))
    token = token_with(bao, name, service, doc_block(f"# Scheduled rotation, custody {custody}"))
    keyring = keyring_class(make_vault_client(bao.addr, token), key_name=name)
    keyring.load()
    assert keyring.rotate().version == 2


@pytest.mark.parametrize("custody", ["transit", "kv"])
def test_documented_operator_policy(bao: BaoDevServer, custody: str) -> None:
    name = unique()
    token = token_with(bao, name, doc_block("# tokend keys init / rotate / list"))
    keyring_class = TransitKeyring if custody == "transit" else KvKeyring
    keyring = keyring_class(make_vault_client(bao.addr, token), key_name=name)
    assert keyring.init().version == 1
    assert keyring.rotate().version == 2


# -- Vault away ----------------------------------------------------------------------------


def test_signs_while_vault_is_down() -> None:
    with BaoDevServer() as own:
        keyring = KvKeyring(own.client(), key_name=unique(), create_if_missing=True)
        keyring.load()
        key = keyring.active()
        own.stop()
        assert len(keyring.sign(key, b"a.b")) == 64
        err = load_error(keyring)
        assert err.reason == "unreachable" and keyring.active() == key  # last good keys
        keyring.check_sign_permission()


# -- minting: signatures on the event loop where they are cheap -------------------------


class ThreadRecordingKv(KvKeyring):
    """KvKeyring noting which thread each signature was made on."""

    def __init__(self, *args: Any, fail: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[str] = []
        self._fail = fail

    def sign(self, key: SigningKey, signing_input: bytes) -> bytes:
        self.threads.append(threading.current_thread().name)
        if self._fail:
            raise VaultError("kv/sign: refused", reason="rejected")
        return super().sign(key, signing_input)


@pytest.mark.parametrize(("alg", "inline"), [("ES256", True), ("EdDSA", True),
                                             ("RS256", False), ("PS256", False)])
async def test_cheap_algorithms_sign_on_the_event_loop(bao: BaoDevServer, alg: str,
                                                       inline: bool) -> None:
    keyring = ThreadRecordingKv(bao.client(), key_name=unique(), algorithm=alg,
                                create_if_missing=True)
    keyring.load()
    assert keyring.signs_inline is inline
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kv-sign") as executor:
        batcher = SignBatcher(keyring, executor)
        minter = TokenMinter(keyring, "https://tokend.test", executor, batcher=batcher)
        minted = await asyncio.gather(*(minter.mint(MINT_SPEC) for _ in range(3)))
    verifier = LocalVerifier(keyring.jwks(), issuer="https://tokend.test", audience="orders")
    for token in minted:
        assert verifier.verify(token.token)["jti"] == token.jti
    assert batcher.signed == 3 and len(keyring.threads) == 3
    loop_thread = threading.current_thread().name
    if inline:  # batched all the same, but no worker thread
        assert keyring.threads == [loop_thread] * 3
    else:
        assert loop_thread not in keyring.threads


async def test_an_inline_signing_failure_is_signing_unavailable(bao: BaoDevServer) -> None:
    keyring = ThreadRecordingKv(bao.client(), key_name=unique(), create_if_missing=True,
                                fail=True)
    keyring.load()
    with ThreadPoolExecutor(max_workers=1) as executor:
        minter = TokenMinter(keyring, "https://tokend.test", executor)
        with pytest.raises(SigningUnavailable, match="kv/sign: refused"):
            await minter.mint(MINT_SPEC)
