"""The Node.js client (clients/node): its unit tests, then its interop suite against the live
tokend with mutual TLS. Both run through npm with the committed package-lock.json."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"


def _run(*command: str, env: dict[str, str] | None = None) -> None:
    """Run `command` in clients/node; on failure, fail with its whole output."""
    result = subprocess.run(
        command, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n"
                    f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}", pytrace=False)


def _npm(*args: str, env: dict[str, str] | None = None) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: the Node.js client needs Node.js 20+ and npm")
    _run(npm, *args, env=env)


@pytest.fixture(scope="module")
def node_build() -> None:
    """Install (only when node_modules is missing or the lock changed) and compile, once."""
    _run(str(NODE_DIR / "scripts" / "ensure-deps"))
    _npm("run", "build", "--silent")


@pytest.mark.timeout(300)
def test_node_unit(node_build: None) -> None:
    """`npm test`: verifier, cookie and client unit tests; no server needed."""
    _npm("test")


@pytest.mark.timeout(300)
def test_node_interop(node_build: None, interop_env: dict[str, str]) -> None:
    """`npm run test:interop`: the whole token lifecycle against the live tokend."""
    _npm("run", "test:interop", env=interop_env)
