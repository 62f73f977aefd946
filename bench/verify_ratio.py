"""The Python row of bench.verifiers: LocalVerifier ÷ raw `cryptography` ES256 verify.

    python -m bench.verify_ratio --fixture tokens.json --seconds 4 --rounds 7

Reads the fixture bench.verifiers wrote (one P-256 key, a pool of distinct tokens) and
prints one JSON line. The measuring loop is the one every language's harness follows
(bench/README.md, "Local verifiers per language"): each token is first checked to pass
both, and a tampered one to fail both; each side warms up (a fifth of the time, untimed,
so JIT compilers settle); then raw and verifier take turns in rounds (alternating who
goes first), each round bounded by time and by count, and each side reports its median
round. Rates are per CPU-second of this process (the process's clock, so a garbage
collector or JIT on another thread is counted, and a busy neighbour is not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokend_client import InvalidToken, LocalVerifier
from tokend_client.jose import b64url_decode

MAX_PER_ROUND = 2_000_000  # verifications per side and round; the time bound comes first


def measure(passes: dict[str, Callable[[], int]], seconds: float,
            rounds: int) -> dict[str, dict[str, float]]:
    """Median rate per side (per CPU-second and per wall-second) over alternating rounds."""
    per_round = seconds / rounds / len(passes)
    names = list(passes)
    for name in names:  # warm-up, not counted: a fifth of the time, so JITs settle
        _round(passes[name], max(per_round, seconds / 5))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            samples[name].append(_round(passes[name], per_round))
    return {name: {"cpu": statistics.median(s[0] for s in values),
                   "wall": statistics.median(s[1] for s in values)}
            for name, values in samples.items()}


def _round(one_pass: Callable[[], int], seconds: float) -> tuple[float, float]:
    """(verifications per CPU-second, per wall-second) over whole passes of the pool."""
    count = 0
    wall, cpu = time.perf_counter(), time.process_time()
    deadline = wall + seconds
    while count < MAX_PER_ROUND:
        count += one_pass()
        if time.perf_counter() >= deadline:
            break
    return (count / max(time.process_time() - cpu, 1e-9),
            count / max(time.perf_counter() - wall, 1e-9))


def _raw_key(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey:
    x, y = (int.from_bytes(b64url_decode(jwk[name]), "big") for name in ("x", "y"))
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def _split(token: str) -> tuple[bytes, bytes]:
    """(signing input, DER signature): the DER is built here, once, outside the timing."""
    signing_input, _, signature = token.rpartition(".")
    raw = b64url_decode(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    return signing_input.encode(), der


def _tampered(token: str) -> str:
    """The same token with one bit of the signature's first byte flipped."""
    head, _, signature = token.rpartition(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{head}.{flipped}{signature[1:]}"


def run(fixture: dict[str, Any], seconds: float, rounds: int) -> dict[str, Any]:
    tokens: list[str] = fixture["tokens"]
    verifier = LocalVerifier(fixture["jwks"], issuer=fixture["issuer"],
                             audience=fixture["audience"])
    key = _raw_key(fixture["jwks"]["keys"][0])
    prepared = [_split(token) for token in tokens]
    algorithm = ec.ECDSA(hashes.SHA256())

    def raw_pass() -> int:
        try:
            for data, der in prepared:
                key.verify(der, data, algorithm)
        except InvalidSignature:
            raise SystemExit("raw verify refused a fixture token") from None
        return len(prepared)

    def verifier_pass() -> int:
        try:
            for token in tokens:
                verifier.verify(token)
        except InvalidToken as exc:
            raise SystemExit(f"verifier refused a fixture token: {exc}") from None
        return len(tokens)

    _check(verifier, key, algorithm, tokens[0])
    raw_pass()  # every token passes both, or this raises
    verifier_pass()
    rates = measure({"raw": raw_pass, "verifier": verifier_pass}, seconds, rounds)
    return row("python", "tokend_client.LocalVerifier", "cryptography (OpenSSL)", len(tokens),
               rounds, rates)


def _check(verifier: LocalVerifier, key: ec.EllipticCurvePublicKey,
           algorithm: ec.ECDSA, token: str) -> None:
    """A tampered signature fails both sides: neither measures a no-op."""
    bad = _tampered(token)
    try:
        verifier.verify(bad)
    except InvalidToken:
        pass
    else:
        raise SystemExit("LocalVerifier accepted a tampered token")
    data, der = _split(bad)
    try:
        key.verify(der, data, algorithm)
    except InvalidSignature:
        return
    raise SystemExit("raw verify accepted a tampered signature")


def row(language: str, verifier: str, raw: str, tokens: int, rounds: int,
        rates: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The JSON line every harness prints (the Go, Node and Java ones build the same)."""
    return {"language": language, "verifier": verifier, "raw": raw, "tokens": tokens,
            "rounds": rounds, "checked": True,
            "verifier_per_s": round(rates["verifier"]["cpu"]),
            "raw_per_s": round(rates["raw"]["cpu"]),
            "ratio": round(rates["verifier"]["cpu"] / rates["raw"]["cpu"], 3),
            "ratio_wall": round(rates["verifier"]["wall"] / rates["raw"]["wall"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.verify_ratio", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixture", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time, both sides")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600 or not 1 <= args.rounds <= 1000:
        parser.error("--seconds in (0, 600], --rounds in [1, 1000]")
    print(json.dumps(run(json.loads(args.fixture.read_text()), args.seconds, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
