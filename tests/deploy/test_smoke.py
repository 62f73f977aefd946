"""The smoke test that docs/deploy.md runs in the cluster, run here against a real tokend
with mutual TLS on loopback (the interop fixture): same script, same environment names."""

from __future__ import annotations

import subprocess
import sys

from .support import KUBERNETES_DIR

SMOKE = KUBERNETES_DIR / "examples" / "tokend_smoke.py"


def test_smoke_script_passes_against_a_live_tokend(interop_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, str(SMOKE)], env=interop_env, capture_output=True,
                            text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "tokend smoke test passed" in result.stdout
    for step in ("issue: ok", "verify (rpc): ok", "jwks: ok", "verify (local): ok"):
        assert step in result.stdout, output


def test_smoke_script_fails_loudly_without_a_client_certificate(
        interop_env: dict[str, str]) -> None:
    env = {**interop_env, "TOKEND_CLIENT_CERT": ""}
    result = subprocess.run([sys.executable, str(SMOKE)], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "TOKEND_CLIENT_CERT" in result.stderr
