"""The shape of tokend_client.jose: the names it has always offered still import, and the
server stands on the small public surface the package docstring and
docs/architecture.md name, never on a private helper of the client package."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import tokend_client
from tokend_client import jose

REPO = Path(__file__).resolve().parents[4]
SERVER = REPO / "server" / "tokend"
# What server/tokend may import from tokend_client.jose (the package docstring's list).
SERVER_SURFACE = frozenset({
    "b64url_decode", "b64url_encode", "b64url_uint", "strict_json_loads",
    "json_segment", "compact_jws",
    "VerifyingKey", "public_jwk", "create_signature", "verify_signature", "signature_length",
})
# What the server imports from tokend_client itself, and the modules it may import from.
# error_from_rpc: `tokend token` is a client of tokend and reads its error details too.
CLIENT_SURFACE = frozenset({"LocalVerifier", "InvalidToken", "Reason", "verify_compact",
                            "actors", "error_from_rpc"})
# binding and delegation: the cnf and act rules (issue 18), shared by Verify and the verifier.
SERVER_MODULES = frozenset({"tokend_client", "tokend_client.jose", "tokend_client.v1",
                            "tokend_client.binding", "tokend_client.delegation"})
# The names `from tokend_client.jose import …` gave before jose became a package.
FORMER_NAMES = (
    "MAX_COMPACT_BYTES", "MAX_JSON_DEPTH", "MAX_JWKS_BYTES", "SUPPORTED_ALGORITHMS",
    "JwkSet", "PublicKey", "VerifiedJws", "VerifyingKey", "as_key_set", "b64url_decode",
    "b64url_encode", "strict_json_loads", "verify_compact", "verify_jws",
)


def server_imports() -> list[tuple[Path, str, str]]:
    """(file, module, name) for every `from tokend_client… import name` under server/."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name, "") for alias in node.names
                          if alias.name.startswith("tokend_client")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "tokend_client"):
                found += [(path, node.module or "", alias.name) for alias in node.names]
    return found


def test_the_server_uses_only_the_named_surface() -> None:
    imports = server_imports()
    assert imports, "the scan found no import of tokend_client at all"
    used_jose = set()
    for path, module, name in imports:
        where = f"{path.relative_to(REPO)}: from {module} import {name}"
        assert module in SERVER_MODULES, where
        assert not name.startswith("_"), where
        if module == "tokend_client.jose":
            assert name in SERVER_SURFACE, where
            used_jose.add(name)
        elif module == "tokend_client":
            assert name in CLIENT_SURFACE, where
    assert used_jose == SERVER_SURFACE, "the documented surface names what is not used"


@pytest.mark.parametrize("name", sorted(SERVER_SURFACE))
def test_the_surface_is_public_and_documented(name: str) -> None:
    assert name in jose.__all__
    assert f"``{name}``" in (jose.__doc__ or "")
    assert f"`{name}`" in (REPO / "docs" / "architecture.md").read_text()


@pytest.mark.parametrize("name", FORMER_NAMES)
def test_former_names_still_import(name: str) -> None:
    assert getattr(importlib.import_module("tokend_client.jose"), name) is not None


def test_one_public_key_class_and_one_verify_result() -> None:
    """Each name means one thing across the client and the server."""
    assert tokend_client.PublicKey is jose.PublicKey
    for path, _module, name in server_imports():
        assert name not in {"PublicKey", "VerifyResult"}, path
    for path in SERVER.rglob("*.py"):
        tree = ast.parse(path.read_text())
        defined = {node.name for node in ast.walk(tree)
                   if isinstance(node, ast.ClassDef | ast.FunctionDef)}
        defined |= {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
        assert not defined & {"PublicKey", "VerifyResult", "b64url", "public_jwk"}, path
