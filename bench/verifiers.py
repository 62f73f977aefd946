"""Local verifiers per language: each one's ES256 verify rate ÷ its language's raw ES256 verify.

    python -m bench.verifiers                  # all four, JSON on stdout
    python -m bench.verifiers --quick          # tiny counts: proves the harnesses run
    python -m bench.verifiers --langs go,java --seconds 20

Issue 12's row: strictness must not be paid for with speed (target ≥ 0.8 per language).
One fixture (a P-256 key and a pool of distinct tokend-shaped tokens, distinct `iat`, `jti`
and `sub` so no cache of verified tokens can flatter a verifier) is written once and read
by a harness in each language, each its own process, one language at a time:

| language | verifier | raw | harness |
|---|---|---|---|
| Python | tokend_client.LocalVerifier | cryptography | bench/verify_ratio.py |
| Go | tokend.Verifier | crypto/ecdsa | clients/go/bench/verifyratio |
| Node.js | Verifier | node:crypto | clients/node/bench/verify-ratio.ts |
| Java | TokendVerifier | JDK Signature SHA256withECDSA | VerifyRatio (Java, below) |

The Java harness is a test-scope main class,
clients/java/src/test/java/dev/tokend/client/bench/VerifyRatio.java.
Every harness follows bench/verify_ratio.py's loop (alternating rounds, medians, bounded
in time and count) and prints the same JSON line. A language whose toolchain is missing
or whose harness fails gives a row with "error" instead of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.crypto import Signer
from bench.servers import AUDIENCE, ISSUER, ROOT, loads_json_line

LANGUAGES = ("python", "go", "node", "java")
TOOLS = ROOT / ".tools" / "bench"
GO_DIR, NODE_DIR, JAVA_DIR = (ROOT / "clients" / name for name in ("go", "node", "java"))
JAVA_CLASSPATH = JAVA_DIR / "target" / "bench-classpath.txt"
BUILD_TIMEOUT = 900  # a cold Maven or Go module download on 2 shared cores


def fixture(count: int, now: int | None = None) -> dict[str, Any]:
    """One ES256 key and `count` distinct tokens shaped like tokend's, valid for 15 min
    from `now` (default: the current time)."""
    signer = Signer("ES256")
    now = int(time.time()) if now is None else now
    tokens = [signer.token(index, now - index).token for index in range(count)]
    return {"issuer": ISSUER, "audience": AUDIENCE, "jwks": {"keys": [signer.jwk]},
            "tokens": tokens}


def build(language: str) -> list[str]:
    """Build a language's harness (quick when warm); return the command that runs it."""
    if language == "python":
        return [sys.executable, "-W", "ignore", "-m", "bench.verify_ratio"]
    if language == "go":
        binary = TOOLS / "verify-ratio-go"
        _run([_tool("go"), "build", "-o", str(binary), "./bench/verifyratio"], GO_DIR,
             env={**os.environ, "GOFLAGS": "-mod=readonly"})
        return [str(binary)]
    if language == "node":
        _run([str(NODE_DIR / "scripts" / "ensure-deps")], NODE_DIR)
        _run([_tool("npm"), "run", "build", "--silent"], NODE_DIR)
        return [_tool("node"), str(NODE_DIR / "dist" / "bench" / "verify-ratio.js")]
    if language == "java":
        # The harness is a test-scope main class; its classpath comes from Maven.
        _run([_tool("mvn"), "-q", "-B", "-ntp", "test-compile", "dependency:build-classpath",
              "-Dmdep.includeScope=test", f"-Dmdep.outputFile={JAVA_CLASSPATH}"], JAVA_DIR)
        classpath = os.pathsep.join([str(JAVA_DIR / "target" / "test-classes"),
                                     str(JAVA_DIR / "target" / "classes"),
                                     JAVA_CLASSPATH.read_text().strip()])
        return [_tool("java"), "-cp", classpath, "dev.tokend.client.bench.VerifyRatio"]
    raise ValueError(f"unknown language {language!r}")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH")
    return path


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    TOOLS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed in {cwd.name}: "
                           f"{(done.stderr or done.stdout)[-1500:]}")


def measure(language: str, fixture_path: Path, seconds: float, rounds: int) -> dict[str, Any]:
    """One language's row: its harness's JSON line, or the reason it has none."""
    try:
        command = build(language)
        done = subprocess.run([*command, "--fixture", str(fixture_path), "--seconds",
                               str(seconds), "--rounds", str(rounds)],
                              cwd=ROOT, capture_output=True, text=True,
                              timeout=3 * seconds + 120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"harness exited {done.returncode}: {done.stderr[-1500:]}")
        row = loads_json_line(done.stdout)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        return {"language": language, "error": str(exc)[:2000]}
    if row.get("language") != language:
        return {"language": language, "error": f"harness answered for {row.get('language')}"}
    return row


def run(languages: tuple[str, ...], seconds: float, rounds: int, tokens: int,
        log: Any = None) -> list[dict[str, Any]]:
    """Every language's row, one harness at a time, all on the same fixture."""
    with tempfile.TemporaryDirectory(prefix="tokend-verifiers-") as tmp:
        path = Path(tmp) / "fixture.json"
        path.write_text(json.dumps(fixture(tokens)))
        rows = []
        for language in languages:
            rows.append(measure(language, path, seconds, rounds))
            if log:
                row = rows[-1]
                log(f"{language}: " + (f"ratio {row['ratio']} ({row['verifier_per_s']}/s ÷ "
                                       f"{row['raw_per_s']}/s raw)" if "ratio" in row
                                       else f"not measured: {row['error'][:300]}"))
        return rows


def _languages(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = set(names) - set(LANGUAGES)
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"languages are {', '.join(LANGUAGES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.verifiers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--langs", type=_languages, default=LANGUAGES,
                        help="comma-separated, of " + ", ".join(LANGUAGES))
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured seconds per language, both sides together")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=64, help="distinct tokens in the pool")
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts (0.2 s, 2 rounds, 4 tokens): proves the harnesses "
                             "run, measures nothing worth reading")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.tokens = 0.2, 2, 4
    if not 1 <= args.tokens <= 4096:
        parser.error("--tokens in [1, 4096]")
    rows = run(args.langs, args.seconds, args.rounds, args.tokens,
               log=lambda message: print(message, file=sys.stderr, flush=True))
    print(json.dumps({"verifiers": rows}))
    return 0 if all("ratio" in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
