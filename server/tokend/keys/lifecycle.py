"""Key rotation phases, derived from version creation times and configuration alone.

A key version goes **next** (published in the JWKS, not signing) → **active** (signing)
→ **retired** (published until every token it signed has expired) → **gone** (no longer
published). Every replica computes the same phases from the same inputs (each version's
creation time, as custody records it, and the settings), so replicas agree without
talking to each other. Only the clock differs between them: a replica whose clock runs
s seconds ahead switches s seconds early, which `propagation_delay` has room for.

The rules, for versions v1 < v2 < … with creation times c1, c2, …:
- the first version signs from its creation (a brand-new key has nothing to propagate to);
- every later version activates at max(c + propagation_delay, its predecessor's
  activation), so activations never run backwards, even if creation times do;
- at time t the active version is the newest one activated by t (the first if none is);
- an older version was active until its successor activated; its tokens have all
  expired `retire_after` (tokens.max_ttl + tokens.leeway) later, and then it is gone.

Everything here is pure: no Vault, no clock of its own. Tests drive it with fake times.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokend.config import Settings

#: Room on top of the minimum propagation delay, for clock skew between Vault and the
#: replicas and for a verifier that fetches a moment late.
PROPAGATION_MARGIN = 60.0


class Phase(enum.Enum):
    """Where a key version is in its life."""

    NEXT = "next"  # published, not signing yet
    ACTIVE = "active"  # signs new tokens
    RETIRED = "retired"  # published until every token it signed has expired
    GONE = "gone"  # no longer published; nothing it signed is still valid

    @property
    def published(self) -> bool:
        """Whether a version in this phase belongs in the JWKS."""
        return self is not Phase.GONE


@dataclass(frozen=True)
class Lifecycle:
    """The settings that turn creation times into phases.

    The defaults (activate at once, publish forever, never rotate) describe a keyring
    built without settings, e.g. in a test; the service builds one with `from_settings`.
    """

    # A new version is published this many seconds before it signs.
    propagation_delay: float = 0.0
    # A retired version stays published this long after its successor activated.
    retire_after: float = math.inf
    # Create a new version when the newest one is this old; 0 means never.
    rotation_period: float = 0.0

    def __post_init__(self) -> None:
        if self.propagation_delay < 0 or self.retire_after < 0 or self.rotation_period < 0:
            raise ValueError("key lifecycle durations must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings) -> Lifecycle:
        """The lifecycle the settings ask for; ValueError when they are inconsistent.

        A new version reaches every replica within `vault.key_refresh_interval`, then
        every verifier's cached JWKS within `jwks_max_age` (verifiers that honour
        Cache-Control) or `jwks_consumer_refresh` (istiod, Envoy: timers of their own),
        whichever is longer; signing with it earlier would let some verifier meet a
        `kid` it does not know.
        """
        vault, tokens = settings.vault, settings.tokens
        cached = max(settings.jwks_max_age, settings.jwks_consumer_refresh)
        minimum = cached + vault.key_refresh_interval
        delay = vault.propagation_delay
        if delay is None:
            delay = minimum + PROPAGATION_MARGIN
        elif delay < minimum:
            raise ValueError(
                f"vault.propagation_delay ({delay:g}s) must be at least "
                f"max(jwks_max_age {settings.jwks_max_age}s, jwks_consumer_refresh "
                f"{settings.jwks_consumer_refresh:g}s) + vault.key_refresh_interval "
                f"({vault.key_refresh_interval:g}s) = {minimum:g}s: a verifier with a cached "
                "JWKS would otherwise meet a kid it has not seen yet (set "
                "jwks_consumer_refresh: 0 when no JWKS consumer ignores Cache-Control, "
                "see docs/keys.md)"
            )
        return cls(
            propagation_delay=delay,
            retire_after=tokens.max_ttl + tokens.leeway,
            rotation_period=vault.rotation_period,
        )


@dataclass(frozen=True)
class VersionTimes:
    """When one version activates, retires and is gone (Unix seconds)."""

    version: int
    created: float
    # When it starts signing; for the first version, its creation.
    activates: float
    # When its successor activates; None while it has no successor.
    retires: float | None
    # When it leaves the JWKS (retires + retire_after); None while it has no successor.
    gone: float | None


@dataclass(frozen=True)
class Schedule:
    """The phases of every version a custody holds, as functions of time."""

    versions: tuple[VersionTimes, ...]  # ascending by version, never empty

    @classmethod
    def plan(cls, created: Mapping[int, float], lifecycle: Lifecycle) -> Schedule:
        """Lay out activation, retirement and removal from `{version: creation time}`."""
        if not created:
            raise ValueError("a key schedule needs at least one version")
        order = sorted(created)
        activates: list[float] = []
        for i, version in enumerate(order):
            if i == 0:
                activates.append(created[version])
            else:
                due = created[version] + lifecycle.propagation_delay
                activates.append(max(due, activates[-1]))
        times = []
        for i, version in enumerate(order):
            retires = activates[i + 1] if i + 1 < len(order) else None
            gone = None if retires is None else retires + lifecycle.retire_after
            times.append(VersionTimes(version, created[version], activates[i], retires, gone))
        return cls(tuple(times))

    @property
    def newest(self) -> VersionTimes:
        return self.versions[-1]

    def times(self, version: int) -> VersionTimes:
        """The times of `version`; KeyError when custody does not hold it."""
        for entry in self.versions:
            if entry.version == version:
                return entry
        raise KeyError(version)

    def active_version(self, now: float) -> int:
        """The version that signs at `now`: the newest activated, else the first."""
        for entry in reversed(self.versions):
            if entry.activates <= now:
                return entry.version
        return self.versions[0].version

    def phase(self, version: int, now: float) -> Phase:
        """The phase of `version` at `now`; KeyError when custody does not hold it."""
        entry = self.times(version)
        active = self.active_version(now)
        if version > active:
            return Phase.NEXT
        if version == active:
            return Phase.ACTIVE
        # Older than the active version, so its successor has activated: gone is set.
        assert entry.gone is not None
        return Phase.GONE if now >= entry.gone else Phase.RETIRED

    def phases(self, now: float) -> dict[int, Phase]:
        """Every version's phase at `now`."""
        return {entry.version: self.phase(entry.version, now) for entry in self.versions}

    def rotation_due(self, now: float, period: float) -> bool:
        """True when a rotation schedule (`period` > 0) wants a new version at `now`.

        The newest version counts, not the active one: right after a rotation the old
        version still signs while the new one propagates, and that is no reason to
        rotate again.
        """
        return period > 0 and now - self.newest.created >= period


def parse_time(value: object) -> float:
    """Unix seconds from an RFC 3339 time as Vault writes it (nanoseconds, `Z`).

    ValueError for anything else, including a time without a zone.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a time: {value!r}")
    parsed = datetime.fromisoformat(value)  # Python 3.11 reads Z and 1-9 digit fractions
    if parsed.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return parsed.timestamp()


def format_time(seconds: float | None) -> str:
    """RFC 3339 in UTC with microseconds; `-` for None, `never` for infinity."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
