"""Keeps the published key set current: reloads key versions, feeds the verifier and JWKS."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from concurrent.futures import Executor

import structlog

from tokend import metrics
from tokend.keys.keyring import Keyring, PhasedKeyring
from tokend.keys.lifecycle import format_time
from tokend.vault.client import VaultError
from tokend_client import LocalVerifier

log = structlog.get_logger("tokend.keys")

# Replicas that find a scheduled rotation due at the same moment wait up to this long
# (random), then check again on fresh metadata: the first one's rotation stops the rest.
ROTATION_JITTER = 5.0


class JwksPublisher:
    """Verification reads only this in-memory state, so Verify works while Vault is down."""

    def __init__(self, keyring: Keyring, verifier: LocalVerifier) -> None:
        self._keyring = keyring
        self._verifier = verifier
        self.json = '{"keys":[]}'
        self.algorithms: tuple[str, ...] = ()
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(jwks_json)`` now and whenever the published set changes."""
        self._listeners.append(listener)
        listener(self.json)

    def publish(self) -> None:
        jwks = self._keyring.jwks()
        self._verifier.update_jwks(jwks)
        previous, self.json = self.json, json.dumps(jwks, separators=(",", ":"), sort_keys=True)
        self.algorithms = tuple(sorted({key["alg"] for key in jwks["keys"]}))
        metrics.KEYS_PUBLISHED.set(len(jwks["keys"]))
        if self.json != previous:
            for listener in self._listeners:
                listener(self.json)

    async def follow(self, interval: float, executor: Executor) -> None:
        """Re-read key versions forever; a failed read keeps the last good keys.

        The key set is published again after every attempt, failed or not: phases move
        with the clock (a retired version leaves the JWKS on time while Vault is away).
        With `vault.rotation_period` set, this is also where the schedule rotates.
        """
        loop = asyncio.get_running_loop()
        signing = self._keyring.active().kid
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(executor, self._keyring.load)
                await self._rotate_if_due(interval, executor)
            except VaultError as exc:
                log.warning("keys.reload_failed", error=str(exc))
            self.publish()
            if self._keyring.active().kid != signing:
                signing = self._keyring.active().kid
                log.info("keys.activated", kid=signing)

    async def _rotate_if_due(self, interval: float, executor: Executor) -> None:
        """Rotate when the schedule says so, after a random pause (see ROTATION_JITTER)."""
        keyring = self._keyring
        if not isinstance(keyring, PhasedKeyring) or not keyring.rotation_due():
            return
        await asyncio.sleep(random.uniform(0, min(interval, ROTATION_JITTER)))
        loop = asyncio.get_running_loop()
        rotated = await loop.run_in_executor(executor, keyring.rotate_if_due)
        if rotated is not None:
            times = keyring.schedule().times(rotated.version)
            log.info("keys.rotated", kid=rotated.kid, reason="rotation_period",
                     activates=format_time(times.activates))
