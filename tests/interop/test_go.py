"""The Go client (clients/go): its unit tests, then its interop tests against the live tokend.

`go test` downloads the modules pinned in clients/go/go.sum through the Go module proxy on a
fresh machine; -mod=readonly makes a go.mod/go.sum that is out of date fail instead of being
rewritten.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GO_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "go"
# A cold module download and build of grpc-go took about 80 s on 2 cores; a warm run, seconds.
GO_TIMEOUT = 600


def run_go_test(env: dict[str, str], *extra: str) -> None:
    go = shutil.which("go", path=env.get("PATH"))
    assert go, "the go command is not on PATH; install Go 1.26 or later"
    env = {**env, "GOFLAGS": f"{env.get('GOFLAGS', '')} -mod=readonly".strip()}
    result = subprocess.run(
        [go, "test", "-count=1", *extra, "./..."],
        cwd=GO_CLIENT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=GO_TIMEOUT, check=False,
    )
    assert result.returncode == 0, f"go test {' '.join(extra)} failed:\n{result.stdout}"


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_unit() -> None:
    run_go_test(dict(os.environ))


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_interop(interop_env: dict[str, str]) -> None:
    run_go_test(interop_env, "-tags", "interop")
