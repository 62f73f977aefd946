"""The language-neutral conformance vectors (conformance/vectors/*.json) against the
reference verifier, tokend_client.LocalVerifier, and conformance/vectors-next/*.json:
rules only the Python verifier enforces so far (docs/verifier-contract.md section A).

The Go, Node and Java runners do the same with their verifiers; the format is in
conformance/README.md and the rules in docs/verifier-contract.md. Missing or empty
vector files fail the run: a runner that checks nothing must not pass.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tokend_client import InvalidToken, LocalVerifier, Reason

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / "conformance"
VECTOR_DIR = CONFORMANCE / "vectors"
# Rules the Go, Node and Java verifiers do not enforce yet, or fields their runners do
# not read yet (conformance/README.md, docs/verifier-contract.md §9 and section A).
NEXT_DIR = CONFORMANCE / "vectors-next"
NEXT_FILES = {"cnf.json", "act.json"}
# Options only vectors-next cases carry.
NEXT_OPTION_KEYS = {"delegation"}
EXPECTED_FILES = {
    "base64url.json",
    "claims.json",
    "header.json",
    "json.json",
    "keys.json",
    "numericdate.json",
    "signature.json",
    "valid.json",
}
OPTION_KEYS = {
    "issuer",
    "audience",
    "algorithms",
    "leeway",
    "max_lifetime",
    "max_token_bytes",
    "required_claims",
    "required_typ",
}
CASE_KEYS = {"id", "rule", "jwks", "options", "now", "required_scopes", "expect"}
REASONS = {reason.value for reason in Reason}
# Every rule a case names starts with the number of a rule in docs/verifier-contract.md.
RULE = re.compile(r"^(C\d|H\d|S\d|K\d|J\d+|B\d|A\d|V) \S")
NEXT_CASE_KEYS = {"presenter_x5t_s256"}  # optional, vectors-next only


def _load(directory: Path = VECTOR_DIR) -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in sorted(directory.glob("*.json")):
        for case in json.loads(path.read_text("utf-8"))["cases"]:
            cases.append((path.name, case))
    return cases


CASES = _load()
NEXT_CASES = _load(NEXT_DIR)


def token_of(case: dict[str, Any]) -> str | bytes:
    """The token exactly as presented: text, or raw bytes when it is not valid UTF-8."""
    if "token_b64" in case:
        return base64.b64decode(case["token_b64"], validate=True)
    return case["token"]


def verifier_for(case: dict[str, Any]) -> LocalVerifier:
    options = case["options"]
    return LocalVerifier(
        case["jwks"],
        issuer=options["issuer"],
        audience=options["audience"],
        algorithms=options["algorithms"],
        leeway=options["leeway"],
        max_lifetime=options["max_lifetime"],
        required_typ=options["required_typ"],
        max_token_bytes=options["max_token_bytes"],
        required_claims=options["required_claims"],
        delegation=options.get("delegation", "any"),
    )


def test_every_vector_file_present_and_non_empty() -> None:
    present = {path.name for path in VECTOR_DIR.glob("*.json")}
    assert present == EXPECTED_FILES
    for name in EXPECTED_FILES:
        document = json.loads((VECTOR_DIR / name).read_text("utf-8"))
        assert document["description"]
        assert document["cases"], f"{name} has no cases"
    assert len(CASES) >= 500


def test_every_next_vector_file_present_and_non_empty() -> None:
    assert {path.name for path in NEXT_DIR.glob("*.json")} == NEXT_FILES
    for name in NEXT_FILES:
        document = json.loads((NEXT_DIR / name).read_text("utf-8"))
        assert document["description"] and document["cases"], name
    assert any("presenter_x5t_s256" in case for _, case in NEXT_CASES)
    reasons = {case["expect"].get("reason") for _, case in NEXT_CASES}
    assert {"MALFORMED", "DELEGATION", "CERTIFICATE_MISMATCH", None} <= reasons


def test_case_format() -> None:
    ids = [case["id"] for _, case in CASES + NEXT_CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique across files"
    for name, case in CASES + NEXT_CASES:
        where = f"{name}/{case['id']}"
        assert re.fullmatch(r"[a-z0-9-]+", case["id"]), where
        optional = NEXT_CASE_KEYS if (name, case) in NEXT_CASES else set()
        assert set(case) - {"token", "token_b64"} - optional == CASE_KEYS, where
        presenter = case.get("presenter_x5t_s256")
        assert presenter is None or re.fullmatch(r"[A-Za-z0-9_-]{43}", presenter), where
        assert ("token" in case) != ("token_b64" in case), where
        extra = NEXT_OPTION_KEYS if (name, case) in NEXT_CASES else set()
        assert OPTION_KEYS <= set(case["options"]) <= OPTION_KEYS | extra, where
        assert RULE.match(case["rule"]), where
        expect = case["expect"]
        if expect["valid"]:
            assert set(expect) == {"valid", "sub"} and isinstance(expect["sub"], str), where
        else:
            assert set(expect) == {"valid", "reason"} and expect["reason"] in REASONS, where


def test_key_sets_are_public() -> None:
    """Vectors carry public JWKs only (the private test keys stay in conformance/keys)."""
    private = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
    for _, case in CASES + NEXT_CASES:
        for jwk in case["jwks"]["keys"]:
            assert private.isdisjoint(jwk), case["id"]


def test_token_b64_only_where_the_text_is_not_utf8() -> None:
    raw = [case for _, case in CASES if "token_b64" in case]
    assert raw, "the suite must hold raw-byte tokens"
    for case in raw:
        with pytest.raises(UnicodeDecodeError):
            token_of(case).decode("utf-8")  # type: ignore[union-attr]


@pytest.mark.parametrize(("file", "case"),
                         [pytest.param(f, c, id=c["id"]) for f, c in CASES + NEXT_CASES])
def test_vector(file: str, case: dict[str, Any]) -> None:
    verifier = verifier_for(case)
    expect = case["expect"]
    try:
        claims = verifier.verify(
            token_of(case), now=case["now"], required_scopes=case["required_scopes"],
            presenter_x5t_s256=case.get("presenter_x5t_s256"),
        )
    except InvalidToken as exc:
        assert not expect["valid"], f"{case['rule']}: refused with {exc.reason.value}: {exc}"
        assert exc.reason.value == expect["reason"], case["rule"]
        return
    assert expect["valid"], f"{case['rule']}: accepted, expected {expect['reason']}"
    assert claims["sub"] == expect["sub"]


def _generator() -> Any:
    """conformance/generate.py as a module (it is a script, not a package member)."""
    name = "conformance_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CONFORMANCE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_committed_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    """CI drift check: the committed vectors are exactly what generate.py makes."""
    assert _generator().main(["--check"]) == 0, capsys.readouterr().err


def test_drift_check_notices_a_changed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = _generator()
    for path in VECTOR_DIR.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text("utf-8"), "utf-8")
    target = tmp_path / "valid.json"
    target.write_text(
        target.read_text("utf-8").replace('"valid": true', '"valid": false', 1), "utf-8"
    )
    monkeypatch.setattr(generator, "VECTOR_DIR", tmp_path)
    assert generator.main(["--check"]) == 1
