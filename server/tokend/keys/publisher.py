"""Keeps the published key set current: reloads key versions, feeds the verifier and JWKS."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Executor

import structlog

from tokend import metrics
from tokend.keys.keyring import Keyring
from tokend.keys.vault import VaultError
from tokend_client import LocalVerifier

log = structlog.get_logger("tokend.keys")


class JwksPublisher:
    """Verification reads only this in-memory state, so Verify works while Vault is down."""

    def __init__(self, keyring: Keyring, verifier: LocalVerifier) -> None:
        self._keyring = keyring
        self._verifier = verifier
        self.json = '{"keys":[]}'
        self.algorithms: tuple[str, ...] = ()

    def publish(self) -> None:
        jwks = self._keyring.jwks()
        self._verifier.update_jwks(jwks)
        self.json = json.dumps(jwks, separators=(",", ":"), sort_keys=True)
        self.algorithms = tuple(sorted({key["alg"] for key in jwks["keys"]}))
        metrics.KEYS_PUBLISHED.set(len(jwks["keys"]))

    async def follow(self, interval: float, executor: Executor) -> None:
        """Re-read key versions forever; a failed read keeps the last good keys."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(executor, self._keyring.load)
            except VaultError as exc:
                log.warning("keys.reload_failed", error=str(exc))
                continue
            self.publish()
