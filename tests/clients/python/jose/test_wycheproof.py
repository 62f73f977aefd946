"""Project Wycheproof JOSE vectors against tokend_client.jose.verify_compact.

The vectors are read from the shared checkout beside the repository
(``../shared/wycheproof/testvectors_v1``), or from ``TOKEND_WYCHEPROOF_DIR``. They are
never copied into the repo. A missing directory fails the run: silently skipping
would hide that the suite stopped testing anything.

Every JWS vector is a test. ``valid`` must verify and ``invalid`` must raise
InvalidToken, except the few listed in conformance/wycheproof-deviations.json (read
into DEVIATIONS) where our policy is deliberately stricter than the vector; those must
be rejected, and a stale entry fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tokend_client import InvalidToken, JwkSet, verify_compact
from tokend_client.jose import SUPPORTED_ALGORITHMS, PublicKey, verify_jws
from tokend_client.jose.jws import _verify_remembered

VECTOR_DIR = Path(
    os.environ.get("TOKEND_WYCHEPROOF_DIR")
    or Path(__file__).resolve().parents[4].parent / "shared" / "wycheproof" / "testvectors_v1"
)
FILES = {
    "jws": "json_web_signature_test.json",
    "jwk": "json_web_key_test.json",
    "crypto": "json_web_crypto_test.json",
}
# json_web_crypto_test.json holds JWE groups (jwe_aes, jwe_ec) we do not implement.
EXPECTED_JWE_SKIPS = 34
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
ALL_ALGORITHMS = tuple(sorted(SUPPORTED_ALGORITHMS))

# (file, tcId) -> why we reject a vector Wycheproof marks "valid". Shared with the Go,
# Node and Java Wycheproof runners: conformance/wycheproof-deviations.json.
DEVIATIONS_FILE = Path(__file__).resolve().parents[4] / "conformance" / "wycheproof-deviations.json"
_FILE_KEYS = {name: key for key, name in FILES.items()}


def _deviations() -> dict[tuple[str, int], str]:
    entries = json.loads(DEVIATIONS_FILE.read_text("utf-8"))["deviations"]
    deviations = {(_FILE_KEYS[e["file"]], int(e["tcId"])): e["reason"] for e in entries}
    assert len(deviations) == len(entries), "duplicate entry in " + DEVIATIONS_FILE.name
    return deviations


DEVIATIONS: dict[tuple[str, int], str] = _deviations()


# Flags whose vectors must fail at a specific layer, not by an incidental earlier check.
REASONS_BY_FLAG: dict[str, frozenset[str]] = {
    "ModifiedPadding": frozenset({"BAD_SIGNATURE"}),
    "ModifiedSignature": frozenset({"BAD_SIGNATURE"}),
    "WrongPrimitive": frozenset({"BAD_SIGNATURE", "DISALLOWED_ALGORITHM"}),
    "AlgIsNone": frozenset({"DISALLOWED_ALGORITHM"}),
    "JsonSerialization": frozenset({"MALFORMED"}),
}


@dataclass(frozen=True)
class Vector:
    file: str
    tc_id: int
    comment: str
    flags: tuple[str, ...]
    result: str
    jws: Any
    public_jwks: dict[str, Any]


def _load(name: str) -> dict[str, Any] | None:
    path = VECTOR_DIR / name
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


def _as_set(jwk_or_set: dict[str, Any]) -> dict[str, Any]:
    return jwk_or_set if "keys" in jwk_or_set else {"keys": [jwk_or_set]}


def public_jwks(group: dict[str, Any]) -> dict[str, Any]:
    """The group's public key set, derived from ``private`` when there is none."""
    if "public" in group:
        return _as_set(group["public"])
    private = _as_set(group["private"])
    return {
        "keys": [
            {k: v for k, v in jwk.items() if k not in PRIVATE_MEMBERS} for jwk in private["keys"]
        ]
    }


def _is_jwe_group(file_key: str, group: dict[str, Any]) -> bool:
    return file_key == "crypto" and not str(group.get("comment", "")).startswith("jws_")


def collect() -> tuple[list[Vector], int]:
    """All JWS vectors, and how many JWE vectors were skipped."""
    vectors: list[Vector] = []
    jwe_skipped = 0
    for file_key, name in FILES.items():
        data = _load(name)
        for group in (data or {}).get("testGroups", []):
            if _is_jwe_group(file_key, group):
                jwe_skipped += len(group["tests"])
                continue
            keys = public_jwks(group)
            for test in group["tests"]:
                vectors.append(_vector(file_key, test, keys))
    return vectors, jwe_skipped


def _vector(file_key: str, test: dict[str, Any], keys: dict[str, Any]) -> Vector:
    return Vector(
        file=file_key,
        tc_id=test["tcId"],
        comment=test.get("comment", ""),
        flags=tuple(test.get("flags", ())),
        result=test["result"],
        jws=test["jws"],
        public_jwks=keys,
    )


VECTORS, JWE_SKIPPED = collect()


def outcome(vector: Vector) -> str:
    """'accepted', or why the vector was rejected."""
    try:
        key_set = JwkSet.from_json(vector.public_jwks)
    except ValueError as exc:
        return f"key set refused: {exc}"
    try:
        verify_compact(vector.jws, key_set, ALL_ALGORITHMS)
    except InvalidToken as exc:
        return f"{exc.reason.value}: {exc}"
    return "accepted"


def test_vector_files_present() -> None:
    missing = [name for name in FILES.values() if not (VECTOR_DIR / name).is_file()]
    assert not missing, f"Wycheproof vectors missing in {VECTOR_DIR}: {missing}"


def test_every_jws_vector_collected() -> None:
    total = 0
    for name in FILES.values():
        data = _load(name)
        assert data is not None, name
        total += data["numberOfTests"]
    assert JWE_SKIPPED == EXPECTED_JWE_SKIPS
    assert len(VECTORS) == total - JWE_SKIPPED
    assert len({(v.file, v.tc_id) for v in VECTORS}) == len(VECTORS)


def test_deviations_name_real_valid_vectors() -> None:
    valid = {(v.file, v.tc_id) for v in VECTORS if v.result == "valid"}
    assert set(DEVIATIONS) <= valid


@pytest.mark.parametrize("vector", [pytest.param(v, id=f"{v.file}-{v.tc_id}") for v in VECTORS])
def test_vector(vector: Vector) -> None:
    result = outcome(vector)
    deviation = DEVIATIONS.get((vector.file, vector.tc_id))
    if vector.result == "valid" and deviation is None:
        assert result == "accepted", f"{vector.comment}: {result}"
        return
    # "invalid" vectors and our documented deviations must both be refused.
    assert result != "accepted", f"{vector.comment} ({deviation or vector.result}) accepted"
    for flag in vector.flags:
        expected = REASONS_BY_FLAG.get(flag)
        assert expected is None or result.split(":")[0] in expected, f"{flag}: {result}"


def _groups() -> list[Any]:
    """The vectors of each key set that parses, grouped by that set."""
    groups: dict[int, list[Vector]] = {}
    for vector in VECTORS:
        groups.setdefault(id(vector.public_jwks), []).append(vector)
    params = []
    for members in groups.values():
        try:
            JwkSet.from_json(members[0].public_jwks)
        except ValueError:
            continue
        params.append(pytest.param(members, id=f"{members[0].file}-{members[0].tc_id}"))
    return params


def _shortcut(jws: Any, remembered: dict[str, PublicKey]) -> str | None:
    """What _verify_remembered decides, as outcome() says it; None: not its to decide."""
    try:
        payload = _verify_remembered(jws, remembered)
    except InvalidToken as exc:
        return f"{exc.reason.value}: {exc}"
    return None if payload is None else "accepted"


@pytest.mark.parametrize("members", _groups())
def test_shortcuts_decide_every_vector_alike(members: list[Vector]) -> None:
    """After a group's genuine tokens verified, its key set knows their headers and
    their header segments can be remembered: every vector of the group must still get
    the outcome a fresh key set gives it, through either shortcut."""
    warm = JwkSet.from_json(members[0].public_jwks)
    remembered: dict[str, PublicKey] = {}
    for vector in members:
        if outcome(vector) == "accepted":
            remembered[vector.jws.split(".")[0]] = verify_jws(vector.jws, warm, ALL_ALGORITHMS).key
    decided = 0
    for vector in members:
        expected = outcome(vector)
        try:
            verify_compact(vector.jws, warm, ALL_ALGORITHMS)
        except InvalidToken as exc:
            assert f"{exc.reason.value}: {exc}" == expected
        else:
            assert expected == "accepted"
        fast = _shortcut(vector.jws, remembered)
        assert fast in (None, expected)
        decided += fast is not None
    assert decided >= len(remembered)


def _private_groups() -> list[Any]:
    params = []
    for file_key, name in FILES.items():
        for index, group in enumerate((_load(name) or {}).get("testGroups", [])):
            if "private" in group and any(
                PRIVATE_MEMBERS & jwk.keys() for jwk in _as_set(group["private"])["keys"]
            ):
                params.append(pytest.param(group["private"], id=f"{file_key}-group{index}"))
    return params


@pytest.mark.parametrize("private_set", _private_groups())
def test_private_key_sets_refused(private_set: dict[str, Any]) -> None:
    """Sets that carry private or symmetric key material are refused whole."""
    with pytest.raises(ValueError, match="private or symmetric"):
        JwkSet.from_json(_as_set(private_set))
