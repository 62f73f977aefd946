"""A circuit breaker for signing: after a signing call fails, Issue fails fast instead of
queueing behind a key custody that does not answer.

States: `closed` (sign as usual); `open` (every new signing request is refused at once
with SigningUnavailable) for `cooldown` seconds after a failure; then `half_open` while
one probe call tests the custody (requests are still refused meanwhile). The probe's
success closes the circuit, its failure opens it for another `cooldown`. The batcher
(tokend.tokens.batching) owns the circuit and sends the probe, so the circuit closes
again when Vault recovers even if no Issue arrives meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from tokend import metrics
from tokend.tokens.errors import SigningUnavailable

State = Literal["closed", "open", "half_open"]


class SigningCircuit:
    """The state only; `on_change(can_sign)` hears every change between signing and not."""

    def __init__(self, cooldown: float, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] | None = None) -> None:
        if cooldown <= 0:
            raise ValueError("cooldown must be > 0")
        self.cooldown = cooldown
        self.state: State = "closed"
        self._clock = clock
        self._on_change = on_change
        self._reason = ""
        self._opened_at = 0.0
        metrics.SIGNING_AVAILABLE.set(1)

    @property
    def can_sign(self) -> bool:
        return self.state == "closed"

    def check(self) -> None:
        """Raises SigningUnavailable unless the circuit is closed."""
        if self.state != "closed":
            metrics.child(metrics.SIGN_SHED, "circuit_open").inc()
            wait = max(0.0, self._opened_at + self.cooldown - self._clock())
            raise SigningUnavailable(
                f"cannot sign: the last signing call failed ({self._reason}); "
                f"next check in {wait:.1f}s", retry_after=self.retry_after())

    def retry_after(self) -> float:
        """Seconds until signing may work again: the open circuit's probe, or while the
        probe is out (or the circuit is closed), one probe interval."""
        wait = self._opened_at + self.cooldown - self._clock()
        return wait if self.state == "open" and wait > 0 else self.cooldown

    def failed(self, error: BaseException) -> None:
        """A signing call failed as a whole: open (again), whatever the state."""
        self._reason = _short(error)
        self._opened_at = self._clock()
        was = self.state
        self.state = "open"
        if was == "closed":
            metrics.SIGNING_CIRCUIT_OPENED.inc()
            self._changed(False)

    def probing(self) -> None:
        self.state = "half_open"

    def succeeded(self) -> None:
        if self.state != "closed":
            self.state = "closed"
            self._changed(True)

    def _changed(self, can_sign: bool) -> None:
        metrics.SIGNING_AVAILABLE.set(1 if can_sign else 0)
        if self._on_change is not None:
            self._on_change(can_sign)


def _short(error: BaseException) -> str:
    # VaultError messages name the path and reason, never the token (tokend.vault.client).
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
