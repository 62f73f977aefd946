"""tokend's benchmark: `scripts/bench` (see bench/run.py)."""
