"""Rotation phases as pure functions of creation times, settings and a fake clock.

Times are small numbers of seconds; only differences matter. The lifecycle used by most
tests: published 10 s before signing, retired keys kept 100 s (max_ttl + leeway).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tokend.config import load_settings
from tokend.keys.keyring import KeySet, PublishedKey, SigningKey
from tokend.keys.lifecycle import (
    PROPAGATION_MARGIN,
    Lifecycle,
    Phase,
    Schedule,
    format_time,
    parse_time,
)
from tokend_client.jose import public_jwk

NEXT, ACTIVE, RETIRED, GONE = Phase.NEXT, Phase.ACTIVE, Phase.RETIRED, Phase.GONE
LIFE = Lifecycle(propagation_delay=10, retire_after=100)


def phases(created: dict[int, float], now: float, life: Lifecycle = LIFE) -> list[Phase]:
    schedule = Schedule.plan(created, life)
    return [schedule.phase(v, now) for v in sorted(created)]


# -- one version ------------------------------------------------------------------------


@pytest.mark.parametrize("now", [1000.0, 1000.5, 10**9])
def test_first_version_signs_at_once(now: float) -> None:
    schedule = Schedule.plan({1: 1000.0}, LIFE)
    assert schedule.phase(1, now) is ACTIVE
    assert (schedule.newest.activates, schedule.newest.retires, schedule.newest.gone) == (
        1000.0, None, None)


def test_first_version_created_ahead_of_our_clock_still_signs() -> None:
    # Vault's clock ahead of ours: a brand-new key must not wait for our clock.
    assert phases({1: 1000.0}, 990.0) == [ACTIVE]


def test_first_version_present_need_not_be_version_one() -> None:
    # Older versions trimmed away (transit min_available_version, kv dropping gone keys).
    assert phases({7: 1000.0, 8: 2000.0}, 2005.0) == [ACTIVE, NEXT]


# -- one rotation, every boundary ---------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1999.999, [ACTIVE]),  # before the rotation
        (2000.0, [ACTIVE, NEXT]),  # created: published at once, not signing
        (2009.999, [ACTIVE, NEXT]),
        (2010.0, [RETIRED, ACTIVE]),  # created + propagation_delay <= now
        (2109.999, [RETIRED, ACTIVE]),  # successor's activation + retire_after
        (2110.0, [GONE, ACTIVE]),
        (10**9, [GONE, ACTIVE]),
    ],
)
def test_one_rotation(now: float, expected: list[Phase]) -> None:
    created = {1: 1000.0} if now < 2000 else {1: 1000.0, 2: 2000.0}
    assert phases(created, now) == expected


def test_one_rotation_dates() -> None:
    first, second = Schedule.plan({1: 1000.0, 2: 2000.0}, LIFE).versions
    assert (first.activates, first.retires, first.gone) == (1000.0, 2010.0, 2110.0)
    assert (second.activates, second.retires, second.gone) == (2010.0, None, None)


def test_active_version_follows_the_clock() -> None:
    schedule = Schedule.plan({1: 0.0, 2: 50.0, 3: 300.0}, LIFE)
    assert [schedule.active_version(t) for t in (0, 59.9, 60, 309.9, 310, 1e6)] == [
        1, 1, 2, 2, 3, 3]


# -- several rotations --------------------------------------------------------------------


def test_several_rotations() -> None:
    created = {1: 0.0, 2: 1000.0, 3: 2000.0, 4: 3000.0}
    assert phases(created, 3005.0) == [GONE, GONE, ACTIVE, NEXT]
    assert phases(created, 3010.0) == [GONE, GONE, RETIRED, ACTIVE]
    assert phases(created, 3110.0) == [GONE, GONE, GONE, ACTIVE]
    assert phases(created, 1050.0) == [RETIRED, ACTIVE, NEXT, NEXT]


def test_versions_created_before_the_previous_activates() -> None:
    # v2 and v3 created 4 s apart: each activates 10 s after its creation, so v2 signs
    # for 4 s and retires when v3 activates.
    created = {1: 0.0, 2: 1000.0, 3: 1004.0}
    assert phases(created, 1005.0) == [ACTIVE, NEXT, NEXT]
    assert phases(created, 1010.0) == [RETIRED, ACTIVE, NEXT]
    assert phases(created, 1014.0) == [RETIRED, RETIRED, ACTIVE]
    v1, v2, _ = Schedule.plan(created, LIFE).versions
    assert (v1.gone, v2.gone) == (1110.0, 1114.0)
    assert phases(created, 1110.0) == [GONE, RETIRED, ACTIVE]
    assert phases(created, 1114.0) == [GONE, GONE, ACTIVE]


def test_activations_never_run_backwards() -> None:
    # A clock step made v3 look older than v2: v3 still activates no earlier than v2.
    schedule = Schedule.plan({1: 0.0, 2: 1000.0, 3: 995.0}, LIFE)
    assert [v.activates for v in schedule.versions] == [0.0, 1010.0, 1010.0]
    assert schedule.active_version(1010.0) == 3
    assert schedule.phase(2, 1010.0) is RETIRED  # it never signed; it goes in time


def test_without_settings_versions_activate_at_once_and_stay() -> None:
    created = {1: 0.0, 2: 10.0}
    assert phases(created, 10.0, Lifecycle()) == [RETIRED, ACTIVE]
    assert phases(created, 1e12, Lifecycle()) == [RETIRED, ACTIVE]


def test_phase_of_an_unknown_version() -> None:
    with pytest.raises(KeyError):
        Schedule.plan({1: 0.0}, LIFE).phase(2, 0.0)
    with pytest.raises(ValueError):
        Schedule.plan({}, LIFE)
    with pytest.raises(ValueError):
        Lifecycle(propagation_delay=-1)


# -- scheduled rotation -------------------------------------------------------------------


def test_rotation_due_counts_the_newest_version() -> None:
    schedule = Schedule.plan({1: 0.0, 2: 1000.0}, LIFE)
    assert not schedule.rotation_due(1e9, 0)  # 0: no schedule
    assert not schedule.rotation_due(1499.9, 500)
    assert schedule.rotation_due(1500.0, 500)
    # The active version (v1 until 1010) is old, but v2 is on its way: no new rotation.
    assert not schedule.rotation_due(1005.0, 500)


# -- settings ---------------------------------------------------------------------------


def settings(**values: Any) -> Any:
    return load_settings(None, insecure_plaintext=True, **values)


def test_lifecycle_defaults_from_settings() -> None:
    life = Lifecycle.from_settings(settings())
    # istiod's 20-minute JWKS refresh (jwks_consumer_refresh) + key_refresh_interval.
    assert life.propagation_delay == 1200 + 60 + PROPAGATION_MARGIN == 22 * 60
    assert life.retire_after == 3600 + 30  # tokens.max_ttl + leeway
    assert life.rotation_period == 0


def test_without_mesh_consumers_the_delay_follows_jwks_max_age() -> None:
    life = Lifecycle.from_settings(settings(jwks_consumer_refresh=0))
    assert life.propagation_delay == 300 + 60 + PROPAGATION_MARGIN  # jwks_max_age + refresh
    envoy = Lifecycle.from_settings(settings(jwks_consumer_refresh="10m"))
    assert envoy.propagation_delay == 600 + 60 + PROPAGATION_MARGIN


def test_a_sidecar_refreshing_every_20_minutes_knows_each_kid_before_it_signs() -> None:
    """istiod refetches the JWKS every 20 min whatever Cache-Control says, at a phase of
    its own. With the default settings, whatever that phase, its copy holds a new
    version before the version signs its first token."""
    settings_ = settings()
    life = Lifecycle.from_settings(settings_)
    created = 10_000.0
    schedule = Schedule.plan({1: 0.0, 2: created}, life)
    activates = schedule.times(2).activates
    # Worst case: the replicas read the new version a full key_refresh_interval late.
    published_at = created + settings_.vault.key_refresh_interval
    for phase in range(0, 1200, 7):
        fetches = [phase + 1200 * n for n in range(30)]
        seen = min(t for t in fetches if t >= published_at)
        assert seen < activates, (phase, seen, activates)


def test_propagation_delay_shorter_than_a_mesh_refresh_is_refused() -> None:
    # Shorter than istiod's refresh: a sidecar would reject the new kid for minutes.
    bad = settings(vault={"propagation_delay": "7m"})
    with pytest.raises(ValueError, match=r"propagation_delay \(420s\) must be at least .*"
                                         r"jwks_consumer_refresh 1200s.*= 1260s"):
        Lifecycle.from_settings(bad)


def test_lifecycle_from_explicit_settings() -> None:
    life = Lifecycle.from_settings(settings(
        jwks_max_age=60, jwks_consumer_refresh=0,
        vault={"propagation_delay": "2m", "key_refresh_interval": 10, "rotation_period": "30d"},
        tokens={"max_ttl": "10m", "default_ttl": "5m", "leeway": 5}))
    assert (life.propagation_delay, life.retire_after, life.rotation_period) == (
        120, 605, 30 * 86400)


def test_propagation_delay_shorter_than_a_cached_jwks_is_refused() -> None:
    bad = settings(jwks_max_age=300, jwks_consumer_refresh=0,
                   vault={"propagation_delay": 299, "key_refresh_interval": 1})
    with pytest.raises(ValueError, match=r"propagation_delay \(299s\) must be at least "
                                         r"max\(jwks_max_age 300s.*= 301s"):
        Lifecycle.from_settings(bad)
    ok = settings(jwks_max_age=300, jwks_consumer_refresh=0,
                  vault={"propagation_delay": 301, "key_refresh_interval": 1})
    assert Lifecycle.from_settings(ok).propagation_delay == 301


# -- KeySet: phases at the time of asking -------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def published(version: int) -> PublishedKey:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = SigningKey(kid=f"k-v{version}", alg="ES256", version=version)
    return PublishedKey(key, public, public_jwk(public, kid=key.kid, alg="ES256"))


def test_keyset_moves_with_the_clock_without_reloading() -> None:
    clock = Clock(2005.0)
    keys = [published(1), published(2)]
    keyset = KeySet.build(keys, {1: 1000.0, 2: 2000.0}, LIFE, clock)
    kids = lambda: [k["kid"] for k in keyset.jwks()["keys"]]  # noqa: E731
    assert keyset.active.kid == "k-v1" and kids() == ["k-v2", "k-v1"]
    clock.now = 2010.0
    assert keyset.active.kid == "k-v2" and kids() == ["k-v2", "k-v1"]
    assert keyset.lookup(keys[0].key) is keys[0]  # retired: still published, still signs
    clock.now = 2110.0
    assert kids() == ["k-v2"]
    with pytest.raises(ValueError, match="gone"):
        keyset.lookup(keys[0].key)


def test_keyset_needs_a_creation_time_per_version() -> None:
    with pytest.raises(ValueError):
        KeySet.build([published(1)], {1: 0.0, 2: 1.0}, LIFE)


# -- times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-11-30T03:00:44.675597968Z", 1796007644.675597),
        ("2026-11-30T03:00:44Z", 1796007644.0),
        ("2026-11-30T04:00:44.5+01:00", 1796007644.5),
    ],
)
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("text", ["", "2026-11-30T03:00:44", "yesterday", None, 17])
def test_parse_time_refuses(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_format_time_round_trips() -> None:
    assert format_time(1796007644.675597) == "2026-11-30T03:00:44.675597Z"
    assert parse_time(format_time(1796007644.675597)) == pytest.approx(1796007644.675597)
    assert (format_time(None), format_time(math.inf)) == ("-", "never")
