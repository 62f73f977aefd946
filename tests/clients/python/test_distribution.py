"""The tokend-client distribution stays small: no server dependencies, no server imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

CLIENT_DIR = Path(__file__).resolve().parents[3] / "clients" / "python"
# googleapis-common-protos: the google.rpc error details (protos only, needs protobuf).
ALLOWED_DEPENDENCIES = {"grpcio", "protobuf", "googleapis-common-protos", "cryptography"}
# The server and what it alone needs; none may be imported by the client.
FORBIDDEN_MODULES = ("tokend", "hvac", "aiohttp", "sqlite3", "_sqlite3", "pydantic",
                     "structlog", "prometheus_client", "yaml")


def _distribution_name(requirement: str) -> str:
    # PEP 508: the name comes first; normalize it as PEP 503 does.
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_dependencies_are_only_grpc_protobuf_and_cryptography() -> None:
    project = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]
    names = {_distribution_name(req) for req in project["dependencies"]}
    assert names <= ALLOWED_DEPENDENCIES, names - ALLOWED_DEPENDENCIES
    assert not project.get("optional-dependencies")


def test_importing_the_client_loads_no_server_module(tmp_path: Path) -> None:
    # A fresh interpreter, started away from the repository so `tests` and the
    # server package are only importable if something imports them on purpose.
    code = (
        "import json, sys\n"
        "import tokend_client, tokend_client.aio, tokend_client.client, tokend_client.cookies\n"
        "import tokend_client.keysource, tokend_client.v1.tokend_pb2_grpc\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "tokend_client" in loaded
    offending = [name for name in loaded if name.split(".")[0] in FORBIDDEN_MODULES]
    assert offending == []
