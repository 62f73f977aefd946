"""The Java client (clients/java) against the live tokend: `mvn test -Pinterop` runs the
unit tests and the tests tagged "interop" (TokendInteropTest) with the TOKEND_* variables."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JAVA_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "java"


def test_java_client(interop_env: dict[str, str]) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail("Maven (mvn) is not on PATH; the Java client needs Maven 3.8+ and a JDK 17+")
    result = subprocess.run(
        [mvn, "-B", "-ntp", "test", "-Pinterop"],
        cwd=JAVA_CLIENT, env=interop_env, capture_output=True, text=True, timeout=600,
        check=False,
    )
    assert result.returncode == 0, (
        f"mvn test -Pinterop exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
