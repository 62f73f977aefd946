"""What the `tokend keys` commands do: log in, act on the configured custody, describe.

The commands run as an operator (usually with a token of their own, see docs/keys.md),
with the service's settings, so they name exactly the key the service uses and compute
the same phases the replicas do.
"""

from __future__ import annotations

import math
from typing import Any

from tokend.config import Settings
from tokend.keys.custody import build_keyring
from tokend.keys.keyring import PhasedKeyring, SigningKey
from tokend.keys.lifecycle import VersionTimes, format_time
from tokend.vault.session import VaultSession

_COLUMNS = ("version", "kid", "phase", "created", "activates", "retires", "gone")


def open_keyring(settings: Settings, *, custody: str | None = None) -> PhasedKeyring:
    """Log in to Vault as the settings say and build (not load) the keyring.

    Never creates a key as a side effect: `init` is the one command that does.
    """
    session = VaultSession(settings.vault)
    keyring = build_keyring(settings, session.client, custody=custody, create_if_missing=False)
    session.login()
    return keyring


def version_rows(keyring: PhasedKeyring) -> list[dict[str, Any]]:
    """One row per version, oldest first, with its phase now and its dates (RFC 3339)."""
    schedule, now = keyring.schedule(), keyring.now()
    return [
        {
            "version": entry.version,
            "kid": keyring.kid(entry.version),
            "phase": schedule.phase(entry.version, now).value,
            "created": format_time(entry.created),
            "activates": format_time(entry.activates),
            "retires": format_time(entry.retires),
            "gone": format_time(entry.gone),
        }
        for entry in schedule.versions
    ]


def table(rows: list[dict[str, Any]]) -> str:
    """`rows` as aligned text columns with a header line."""
    cells = [[name.upper() for name in _COLUMNS]]
    cells += [[str(row[name]) for name in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def describe_rotation(keyring: PhasedKeyring, key: SigningKey) -> str:
    """What a rotation did and when each step happens, for the operator."""
    schedule = keyring.schedule()
    times = schedule.times(key.version)
    lines = [
        f"created {key.kid} ({key.alg}, custody {keyring.custody} at {keyring.location})",
        f"  published now; signs from {format_time(times.activates)} "
        f"({_in(times.activates - keyring.now())})",
    ]
    previous = [v for v in schedule.versions if v.version < key.version]
    if previous:
        lines.append(_retirement(keyring, previous[-1]))
    return "\n".join(lines)


def describe_init(keyring: PhasedKeyring, key: SigningKey, configured: str) -> str:
    """What `init` made; `configured` is the custody the settings name."""
    text = (f"created {key.kid} ({key.alg}, custody {keyring.custody} at {keyring.location}); "
            "it signs at once")
    if keyring.custody != configured:
        text += f"\n  note: the settings say vault.custody: {configured}; set it to " \
                f"{keyring.custody} for tokend to use this key"
    return text


def _retirement(keyring: PhasedKeyring, entry: VersionTimes) -> str:
    kid = keyring.kid(entry.version)
    gone = "is published for ever" if entry.gone is None or math.isinf(entry.gone) else (
        f"leaves the JWKS at {format_time(entry.gone)}")
    return f"  {kid} then retires (stops signing) and {gone}"


def _in(seconds: float) -> str:
    if seconds <= 0:
        return "now"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes else []
    return "in " + " ".join([*parts, f"{secs}s"])
