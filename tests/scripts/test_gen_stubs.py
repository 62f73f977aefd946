"""scripts/gen-stubs --check: passes on the committed stubs, fails when any language's differ.

Runs the real script (buf generate with every pinned plugin) on a copy of the files it reads,
so a stub can be altered without touching the work tree. The tool caches (.venv, .tools,
clients/node/node_modules) are linked, not copied: a warm check takes a few seconds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Everything gen-stubs reads, and the committed stubs it compares.
COPIED = [
    "scripts/gen-stubs",
    "scripts/buf-plugins",
    "protos",
    "clients/node/scripts",
    "clients/node/package.json",
    "clients/node/package-lock.json",
    "clients/node/.npmrc",
    "clients/python/tokend_client/v1",
    "clients/go/tokendv1",
    "clients/node/src/gen",
    "clients/java/src/generated/java",
]
LINKED = [".venv", ".tools", "clients/node/node_modules"]
# One committed stub per language, and the directory the failure message names.
STUBS = {
    "python": ("clients/python/tokend_client/v1/tokend_pb2.py", "clients/python/tokend_client/v1"),
    "go": ("clients/go/tokendv1/tokend_grpc.pb.go", "clients/go/tokendv1"),
    "node": ("clients/node/src/gen/tokend/v1/tokend_pb.ts", "clients/node/src/gen"),
    "java": (
        "clients/java/src/generated/java/dev/tokend/v1/TokenServiceGrpc.java",
        "clients/java/src/generated/java",
    ),
}


@pytest.fixture(scope="module")
def tools() -> None:
    # Install node_modules (buf, protoc-gen-es) in the work tree first, so the copy links it.
    subprocess.run([str(ROOT / "clients/node/scripts/ensure-deps")], check=True, timeout=300)


@pytest.fixture
def repo(tmp_path: Path, tools: None) -> Path:
    for name in COPIED:
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    (ROOT / ".tools").mkdir(exist_ok=True)
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(repo / "scripts/gen-stubs"), "--check"], capture_output=True, text=True, timeout=600
    )


def test_check_passes_on_committed_stubs(repo: Path) -> None:
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "every stub matches protos/" in result.stdout


@pytest.mark.parametrize("lang", sorted(STUBS))
def test_check_fails_when_a_stub_is_edited(repo: Path, lang: str) -> None:
    stub, directory = STUBS[lang]
    with (repo / stub).open("a", encoding="utf-8") as file:
        file.write("\n// edited by hand\n")
    result = check(repo)
    assert result.returncode == 1
    assert f"gen-stubs: {lang} stubs in {directory} differ from protos/" in result.stderr
    assert sum("differ from protos/" in line for line in result.stderr.splitlines()) == 1


def test_check_fails_on_a_stray_or_missing_stub(repo: Path) -> None:
    (repo / "clients/go/tokendv1/extra.pb.go").write_text("package tokendv1\n", encoding="utf-8")
    (repo / STUBS["java"][0]).unlink()
    result = check(repo)
    assert result.returncode == 1
    assert "Only in" in result.stderr
    assert "go stubs in clients/go/tokendv1 differ" in result.stderr
    assert "java stubs in clients/java/src/generated/java differ" in result.stderr


def test_regenerating_restores_an_edited_stub(repo: Path) -> None:
    stub = repo / STUBS["node"][0]
    committed = stub.read_bytes()
    stub.write_text("// edited by hand\n", encoding="utf-8")
    subprocess.run([str(repo / "scripts/gen-stubs")], check=True, capture_output=True, timeout=600)
    assert stub.read_bytes() == committed
    assert check(repo).returncode == 0
