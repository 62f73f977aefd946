"""Conformance suite for the `Keyring` protocol and the rotation phases.

Every key custody runs these same tests: its test module (test_transit.py, test_kv.py)
subclasses `KeyringConformance` and supplies one fixture, `make_case`: for an algorithm,
a `KeyringCase` that makes keyrings on one fresh key (each one like a replica of its
own), built as the service builds them (Transit with its event-loop transport), and a
way to rotate that key in custody. The suite runs once per algorithm in ALGS.
`sign_batch`, the way every Issue is signed, runs here for every custody too.
Signatures are checked with `cryptography` against public keys rebuilt here from the
published JWKs, so the suite trusts nothing of the implementation under test. Phases run
on a clock the tests move forward (real time plus an offset, since custody stamps
versions with real times).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokend.keys.keyring import Keyring, PhasedKeyring, SigningKey
from tokend.keys.lifecycle import Lifecycle, Phase
from tokend.vault.client import VaultError
from tokend.vault.transport import VaultTransport

MESSAGE = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjb25mb3JtYW5jZSJ9"

# RFC 7517 §4 / RFC 7518 §6: the public members per key type, and nothing else.
COMMON_MEMBERS = {"kty", "kid", "alg", "use"}
PUBLIC_MEMBERS = {"EC": {"crv", "x", "y"}, "RSA": {"n", "e"}, "OKP": {"crv", "x"}}


# Published 10 s before signing; retired versions kept 100 s after their successor signs.
LIFE = Lifecycle(propagation_delay=10, retire_after=100)
ALGS = ("ES256", "RS256", "PS256", "EdDSA")


class Clock:
    """Real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class KeyringCase:
    alg: str
    clock: Clock
    # A new keyring object on this case's key, not loaded (another replica, in effect).
    make: Callable[[], PhasedKeyring]
    rotate: Callable[[], None]  # make custody hold a new latest version
    keyring: PhasedKeyring  # fresh, not loaded yet
    # Whether custody stamps new versions with Vault's clock (real time) rather than the
    # keyring's (the test clock).
    vault_clock: bool
    # Make custody refuse, input by input, to sign with versions older than the newest;
    # None for a custody that cannot refuse one input (kv signs every one in memory).
    refuse_old: Callable[[], None] | None = None
    transport: VaultTransport | None = None  # closed by the batch tests


CaseFactory = Callable[[str], KeyringCase]


# -- helpers that know JOSE, not the implementation ------------------------------------


def b64url_decode(value: str) -> bytes:
    # RFC 7515 §2: base64url without padding; anything else is a publishing bug.
    assert re.fullmatch(r"[A-Za-z0-9_-]+", value), f"not unpadded base64url: {value!r}"
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def uint(value: str) -> int:
    return int.from_bytes(b64url_decode(value), "big")


def jwk_by_kid(jwks: dict[str, Any], kid: str) -> dict[str, Any]:
    found = [k for k in jwks["keys"] if k["kid"] == kid]
    assert len(found) == 1, f"{kid} published {len(found)} times"
    return found[0]


def verify(jwk: dict[str, Any], signature: bytes, data: bytes) -> None:
    """Verify a raw JWS signature with the algorithm the JWK names (raises if invalid)."""
    alg = jwk["alg"]
    if alg == "ES256":
        assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
        key = ec.EllipticCurvePublicNumbers(uint(jwk["x"]), uint(jwk["y"]), ec.SECP256R1())
        if len(signature) != 64:  # RFC 7518 §3.4: r||s, not DER
            raise InvalidSignature
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = encode_dss_signature(r, s)
        key.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))
    elif alg in ("RS256", "PS256"):
        assert jwk["kty"] == "RSA"
        rsa_key = rsa.RSAPublicNumbers(uint(jwk["e"]), uint(jwk["n"])).public_key()
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
        if alg == "PS256":  # RFC 7518 §3.5: MGF1-SHA256, salt = hash length (32)
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        rsa_key.verify(signature, data, pad, hashes.SHA256())
    elif alg == "EdDSA":  # RFC 8037 §3.1
        assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
        ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"])).verify(signature, data)
    else:
        pytest.fail(f"unexpected alg {alg}")


def valid(jwk: dict[str, Any], signature: bytes, data: bytes) -> bool:
    try:
        verify(jwk, signature, data)
    except InvalidSignature:
        return False
    return True


def kids(keyring: Keyring) -> list[str]:
    return [jwk["kid"] for jwk in keyring.jwks()["keys"]]


def rotated(case: KeyringCase) -> tuple[SigningKey, SigningKey]:
    """The active key, then the one that signs after a rotation has activated."""
    old = case.keyring.active()
    case.rotate()
    case.keyring.load()
    case.clock.advance(LIFE.propagation_delay)
    return old, case.keyring.active()


class KeyringConformance:
    """The contract every key custody keeps; see tokend/keys/keyring.py.

    A custody's test module subclasses this class and supplies one fixture, `make_case`:
    given an algorithm, a `KeyringCase` on one fresh key of that custody.
    """

    @pytest.fixture(params=ALGS)
    def case(self, request: pytest.FixtureRequest, make_case: CaseFactory) -> KeyringCase:
        return make_case(request.param)


    @pytest.fixture
    def keyring(self, case: KeyringCase) -> Keyring:
        case.keyring.load()
        return case.keyring


    @pytest.fixture
    def pss_keyring(self, make_case: CaseFactory) -> Keyring:
        keyring = make_case("PS256").keyring
        keyring.load()
        return keyring


    @pytest.fixture
    async def batch_case(self, case: KeyringCase) -> AsyncIterator[KeyringCase]:
        case.keyring.load()
        yield case
        if case.transport is not None:
            await case.transport.close()


    @pytest.fixture
    def pool(self) -> Iterator[ThreadPoolExecutor]:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="conformance") as executor:
            yield executor


    # -- the contract ----------------------------------------------------------------------


    def test_active_and_jwks_need_a_load_first(self, case: KeyringCase) -> None:
        with pytest.raises(RuntimeError):
            case.keyring.active()
        with pytest.raises(RuntimeError):
            case.keyring.jwks()


    def test_keyring_satisfies_the_protocol(self, keyring: Keyring) -> None:
        assert isinstance(keyring, Keyring)


    def test_jwks_publishes_public_members_only(self, keyring: Keyring,
                                                case: KeyringCase) -> None:
        jwks = keyring.jwks()
        assert set(jwks) == {"keys"} and jwks["keys"]
        for jwk in jwks["keys"]:
            assert set(jwk) == COMMON_MEMBERS | PUBLIC_MEMBERS[jwk["kty"]], jwk
            assert jwk["use"] == "sig"
            assert jwk["alg"] == case.alg
            assert isinstance(jwk["kid"], str) and jwk["kid"]
        kids = [jwk["kid"] for jwk in jwks["keys"]]
        assert len(kids) == len(set(kids))


    def test_jwk_coordinates_are_well_formed(self, keyring: Keyring) -> None:
        for jwk in keyring.jwks()["keys"]:
            if jwk["kty"] == "EC":  # RFC 7518 §6.2.1.2: full-length coordinates
                assert len(b64url_decode(jwk["x"])) == len(b64url_decode(jwk["y"])) == 32
            elif jwk["kty"] == "OKP":  # RFC 8037 §2
                assert len(b64url_decode(jwk["x"])) == 32
            else:  # RFC 7518 §6.3.1.1: minimal octets, no leading zero
                assert b64url_decode(jwk["n"])[0] != 0 and b64url_decode(jwk["e"])[0] != 0
                assert uint(jwk["n"]).bit_length() >= 2048


    def test_active_key_is_published(self, keyring: Keyring, case: KeyringCase) -> None:
        active = keyring.active()
        assert isinstance(active, SigningKey)
        assert active.alg == case.alg
        assert jwk_by_kid(keyring.jwks(), active.kid)["alg"] == active.alg


    def test_signature_verifies_with_published_jwk(self, keyring: Keyring) -> None:
        active = keyring.active()
        signature = keyring.sign(active, MESSAGE)
        jwk = jwk_by_kid(keyring.jwks(), active.kid)
        verify(jwk, signature, MESSAGE)
        assert not valid(jwk, signature, MESSAGE + b"x")


    def test_signature_has_the_jws_length(self, keyring: Keyring, case: KeyringCase) -> None:
        active = keyring.active()
        signature = keyring.sign(active, MESSAGE)
        jwk = jwk_by_kid(keyring.jwks(), active.kid)
        if jwk["kty"] == "RSA":
            assert len(signature) == len(b64url_decode(jwk["n"]))
        else:  # ES256 r||s (RFC 7518 §3.4) and Ed25519 (RFC 8032) are both 64 octets
            assert len(signature) == 64


    def test_pss_salt_is_hash_length(self, pss_keyring: Keyring) -> None:
        keyring = pss_keyring
        active = keyring.active()
        signature = keyring.sign(active, MESSAGE)
        key = rsa.RSAPublicNumbers(
            *(uint(jwk_by_kid(keyring.jwks(), active.kid)[m]) for m in ("e", "n"))
        ).public_key()
        pss32 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        key.verify(signature, MESSAGE, pss32, hashes.SHA256())
        # And not the longest salt, which transit makes by default ("auto"). (PSS.MAX_LENGTH
        # would not do here: when verifying, cryptography takes it as "any length".)
        longest_salt = (key.key_size - 1 + 7) // 8 - 32 - 2  # RFC 8017 §9.1.1: emLen - hLen - 2
        longest = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=longest_salt)
        with pytest.raises(InvalidSignature):
            key.verify(signature, MESSAGE, longest, hashes.SHA256())


    def test_rotation_publishes_both_and_pins_versions(self, keyring: Keyring,
                                                       case: KeyringCase) -> None:
        old = keyring.active()
        case.rotate()
        assert keyring.active() == old and kids(keyring) == [old.kid]  # nothing until load()
        keyring.load()
        assert keyring.active() == old  # the new version is published, not signing yet
        (new_kid,) = set(kids(keyring)) - {old.kid}
        case.clock.advance(LIFE.propagation_delay)
        new = keyring.active()  # activated by the clock alone, no load
        assert new.version == old.version + 1 and new.kid == new_kid != old.kid
        jwks = keyring.jwks()
        assert kids(keyring) == [new.kid, old.kid]  # newest first; the old one is retired

        old_signature = keyring.sign(old, MESSAGE)  # the version pin: old key, not latest
        assert valid(jwk_by_kid(jwks, old.kid), old_signature, MESSAGE)
        assert not valid(jwk_by_kid(jwks, new.kid), old_signature, MESSAGE)
        new_signature = keyring.sign(new, MESSAGE)
        assert valid(jwk_by_kid(jwks, new.kid), new_signature, MESSAGE)


    def test_first_version_signs_at_once(self, keyring: PhasedKeyring) -> None:
        active = keyring.active()
        assert active.version == 1 and keyring.schedule().phase(1, keyring.now()) is Phase.ACTIVE
        assert kids(keyring) == [active.kid] == [keyring.kid(1)]


    def test_retired_version_goes_when_its_tokens_have_expired(
            self, keyring: PhasedKeyring, case: KeyringCase) -> None:
        old = keyring.active()
        case.rotate()
        keyring.load()
        new_version = keyring.schedule().newest.version
        case.clock.advance(LIFE.propagation_delay)
        assert keyring.schedule().phase(old.version, keyring.now()) is Phase.RETIRED
        keyring.sign(old, MESSAGE)  # a retired key is still published, so the pin still works
        case.clock.advance(LIFE.retire_after)
        assert keyring.schedule().phases(keyring.now()) == {
            old.version: Phase.GONE, new_version: Phase.ACTIVE}
        assert kids(keyring) == [keyring.active().kid]
        with pytest.raises(ValueError, match="gone"):
            keyring.sign(old, MESSAGE)


    def test_replicas_agree_without_talking(self, keyring: PhasedKeyring,
                                            case: KeyringCase) -> None:
        case.rotate()
        replicas = [case.make() for _ in range(2)]
        for replica in replicas:
            replica.load()
        keyring.load()
        for step in (0, LIFE.propagation_delay, LIFE.retire_after):
            case.clock.advance(step)
            assert {r.active() for r in [keyring, *replicas]} == {keyring.active()}
            assert all(r.jwks() == keyring.jwks() for r in replicas)


    def test_init_creates_once(self, case: KeyringCase) -> None:
        first = case.keyring.init()
        assert first.version == 1 and case.keyring.active() == first
        with pytest.raises(VaultError) as refused:
            case.make().init()
        assert refused.value.reason == "exists" and "tokend keys rotate" in str(refused.value)
        assert case.keyring.active() == first


    def test_rotate_returns_the_new_version(self, keyring: PhasedKeyring) -> None:
        old = keyring.active()
        new = keyring.rotate()
        assert new.version == old.version + 1 and new.kid == keyring.kid(new.version)
        assert keyring.active() == old and new.kid in kids(keyring)
        times = keyring.schedule().times(new.version)
        assert times.activates == times.created + LIFE.propagation_delay


    def test_scheduled_rotation_checks_fresh_metadata(self, case: KeyringCase) -> None:
        period = 1.0  # well above the time a rotation takes (RSA keys are slow to make)
        lifecycle = Lifecycle(LIFE.propagation_delay, LIFE.retire_after, rotation_period=period)
        replicas = [case.make() for _ in range(2)]
        for replica in replicas:
            replica.lifecycle = lifecycle
            replica.load()
        assert not replicas[0].rotation_due() and replicas[0].rotate_if_due() is None
        if case.vault_clock:  # versions carry Vault's time: only real time makes one old
            time.sleep(period)
        else:
            case.clock.advance(period)
        assert all(r.rotation_due() for r in replicas)  # both saw the same old metadata...
        rotated = replicas[0].rotate_if_due()
        assert rotated is not None and rotated.version == 2
        assert replicas[1].rotate_if_due() is None  # ...but the second re-reads before rotating
        assert replicas[1].schedule().newest.version == 2


    def test_unpublished_key_is_refused(self, keyring: Keyring) -> None:
        active = keyring.active()
        unknown_version = SigningKey(kid=active.kid, alg=active.alg, version=active.version + 7)
        other_alg = SigningKey(kid=active.kid, alg="none", version=active.version)
        other_kid = SigningKey(kid="someone-else-v1", alg=active.alg, version=active.version)
        for key in (unknown_version, other_alg, other_kid):
            with pytest.raises(ValueError):
                keyring.sign(key, MESSAGE)


    def test_jwks_is_a_copy(self, keyring: Keyring) -> None:
        first = keyring.jwks()
        first["keys"][0]["d"] = "private!"
        first["keys"].clear()
        second = keyring.jwks()
        assert second["keys"] and all("d" not in jwk for jwk in second["keys"])


    def test_concurrent_signing(self, keyring: Keyring) -> None:
        # tokend signs from a thread pool; every signature must still be right.
        active = keyring.active()
        jwk = jwk_by_kid(keyring.jwks(), active.kid)
        inputs = [MESSAGE + str(i).encode() for i in range(24)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            signatures = list(pool.map(lambda data: keyring.sign(active, data), inputs))
        assert all(valid(jwk, sig, data) for sig, data in zip(signatures, inputs, strict=True))


    # -- sign_batch: how every Issue is signed (tokend.tokens.batching) ---------------------


    async def test_a_batch_signs_every_input_in_order(self, batch_case: KeyringCase,
                                                      pool: ThreadPoolExecutor) -> None:
        keyring = batch_case.keyring
        active = keyring.active()
        inputs = [MESSAGE + str(i).encode() for i in range(5)]
        signatures = await keyring.sign_batch(active, inputs, executor=pool)
        jwk = jwk_by_kid(keyring.jwks(), active.kid)
        assert len(signatures) == len(inputs)
        for signature, data in zip(signatures, inputs, strict=True):
            assert isinstance(signature, bytes), signature
            verify(jwk, signature, data)
        assert not valid(jwk, signatures[0], inputs[1])  # each answer is its own input's


    async def test_a_batch_keeps_the_version_pin(self, batch_case: KeyringCase,
                                                 pool: ThreadPoolExecutor) -> None:
        keyring = batch_case.keyring
        old, new = rotated(batch_case)
        jwks = keyring.jwks()
        (old_signature,) = await keyring.sign_batch(old, [MESSAGE], executor=pool)
        (new_signature,) = await keyring.sign_batch(new, [MESSAGE], executor=pool)
        assert isinstance(old_signature, bytes) and isinstance(new_signature, bytes)
        assert valid(jwk_by_kid(jwks, old.kid), old_signature, MESSAGE)
        assert not valid(jwk_by_kid(jwks, new.kid), old_signature, MESSAGE)
        assert valid(jwk_by_kid(jwks, new.kid), new_signature, MESSAGE)


    async def test_a_batch_for_an_unpublished_key_fails_whole(self, batch_case: KeyringCase,
                                                              pool: ThreadPoolExecutor) -> None:
        active = batch_case.keyring.active()
        unknown = SigningKey(kid=active.kid, alg=active.alg, version=active.version + 7)
        with pytest.raises(ValueError):
            await batch_case.keyring.sign_batch(unknown, [MESSAGE, MESSAGE], executor=pool)


    async def test_an_input_custody_refuses_fails_alone(self, batch_case: KeyringCase,
                                                        pool: ThreadPoolExecutor) -> None:
        """One entry per input, the refusal in its place: the call itself does not raise."""
        keyring, case = batch_case.keyring, batch_case
        old, _ = rotated(case)
        if case.refuse_old is not None:
            case.refuse_old()
        outcomes = await keyring.sign_batch(old, [MESSAGE, MESSAGE + b"2"], executor=pool)
        assert len(outcomes) == 2
        if case.refuse_old is None:  # nothing in custody can refuse one input: all signed
            jwk = jwk_by_kid(keyring.jwks(), old.kid)
            assert all(isinstance(o, bytes) and valid(jwk, o, d)
                       for o, d in zip(outcomes, [MESSAGE, MESSAGE + b"2"], strict=True))
        else:
            for outcome in outcomes:
                assert isinstance(outcome, VaultError) and outcome.reason == "rejected", outcome
        (fresh,) = await keyring.sign_batch(keyring.active(), [MESSAGE], executor=pool)
        assert isinstance(fresh, bytes)
