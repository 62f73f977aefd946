"""Token lifecycle: minting, input rules, refresh families, revocation state."""
