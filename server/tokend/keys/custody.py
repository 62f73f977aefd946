"""Builds the keyring the settings ask for (`vault.custody`), for the service and the CLI."""

from __future__ import annotations

from collections.abc import Callable

import hvac

from tokend.config import Settings
from tokend.keys.keyring import PhasedKeyring
from tokend.keys.kv import KvKeyring
from tokend.keys.lifecycle import Lifecycle
from tokend.keys.transit import TransitKeyring
from tokend.vault.transport import VaultTransport

CUSTODIES = ("transit", "kv")


def build_keyring(
    settings: Settings,
    client: hvac.Client,
    *,
    custody: str | None = None,
    create_if_missing: bool | None = None,
    clock: Callable[[], float] | None = None,
    transport: VaultTransport | None = None,
) -> PhasedKeyring:
    """The configured keyring, not loaded yet; ValueError when the settings conflict.

    `custody` and `create_if_missing` override `vault.custody` and `vault.create_key`
    (the `keys` commands create keys only when told to). `transport` carries Transit's
    batch signs from the event loop (the service passes its session's).
    """
    vault = settings.vault
    lifecycle = Lifecycle.from_settings(settings)
    custody = custody or vault.custody
    create = vault.create_key if create_if_missing is None else create_if_missing
    common = {
        "key_name": vault.key_name, "algorithm": vault.algorithm, "rsa_bits": vault.rsa_bits,
        "create_if_missing": create, "lifecycle": lifecycle, "clock": clock,
    }
    if custody == "transit":
        return TransitKeyring(client, mount=vault.transit_mount, transport=transport, **common)
    if custody == "kv":
        return KvKeyring(client, mount=vault.kv_mount, **common)
    raise ValueError(f"vault.custody must be one of {', '.join(CUSTODIES)}, not {custody!r}")
