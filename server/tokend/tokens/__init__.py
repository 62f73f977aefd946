"""Token lifecycle: minting, claim policy, refresh families, revocation state."""
