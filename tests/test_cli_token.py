"""`tokend token …` as a script runs it: a real CLI process against a real tokend on loopback.

Exit codes are the interface (docs/cli.md): 0 done/valid, 1 invalid, 2 usage,
3 unavailable, 4 denied. Every bad input is one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, free_port, make_settings, mtls_tokend

REPO = Path(__file__).resolve().parents[1]
TOKEND = [sys.executable, "-m", "tokend.cli"]
POLICY = """
callers:
  - identity: "spiffe://tokend.test/cli"
    rpcs: [Issue, Refresh, Revoke]
    issue: {audiences: ["orders"], scopes: ["*"]}
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything naming a tokend or a Vault."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOKEND_", "VAULT_"))}
    return {**env, **extra}


def cli(*argv: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOKEND, *argv], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env or clean_env(), check=False)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    directory = tmp_path_factory.mktemp("cli-token")
    settings = make_settings(bao.addr, bao.token, directory, vault={"key_name": "cli-token"})
    with RunningTokend(settings) as running:
        yield running


def issue(server: RunningTokend, tmp_path: Path, *extra: str) -> str:
    result = cli("token", "issue", "--addr", server.grpc_addr, "--sub", "carol", "--aud",
                 "orders", "--output", "token", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_readme_tour_runs_as_pasted(server: RunningTokend, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    tour = readme.split("## 60-second tour", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    # The curl lines name the dev stack's fixed HTTP port; this server has its own.
    script = "\n".join(line for line in tour.splitlines() if not line.startswith("curl"))
    assert "$ACCESS_TOKEN" in script and "$REFRESH_TOKEN" in script
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                            text=True, timeout=120, cwd=REPO,
                            env=clean_env(TOKEND_ADDR=server.grpc_addr), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "valid: true" in result.stdout
    assert "valid: false\nreason: REASON_REVOKED" in result.stdout
    assert re.search(r"^revoked: [1-9]", result.stdout, re.MULTILINE)


def test_verify_exit_code_is_the_verdict(server: RunningTokend, tmp_path: Path) -> None:
    token = issue(server, tmp_path, "--scope", "orders:read")
    verify = ("token", "verify", "--addr", server.grpc_addr)

    good = cli(*verify, token, "--aud", "orders", "--scope", "orders:read", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("valid: true\n") and "subject: carol" in good.stdout

    wrong = cli(*verify, token, "--aud", "billing", cwd=tmp_path)
    assert wrong.returncode == 1
    assert wrong.stdout == "valid: false\nreason: REASON_WRONG_AUDIENCE\n"

    scope = cli(*verify, token, "--aud", "orders", "--scope", "orders:write", cwd=tmp_path)
    assert (scope.returncode, scope.stdout) == (1, "valid: false\nreason: REASON_MISSING_SCOPE\n")

    garbage = cli(*verify, "not-a-jwt", "--aud", "orders", "--output", "json", cwd=tmp_path)
    assert garbage.returncode == 1 and '"valid": false' in garbage.stdout
    assert '"reason": "REASON_MALFORMED"' in garbage.stdout

    down = cli("token", "verify", token, "--aud", "orders", "--addr",
               f"127.0.0.1:{free_port()}", "--timeout", "3", cwd=tmp_path)
    assert down.returncode == 3
    assert "UNAVAILABLE: cannot reach tokend at 127.0.0.1:" in one_line_error(down)
    assert down.stdout == ""


def test_refresh_and_revoke_exit_codes(server: RunningTokend, tmp_path: Path) -> None:
    pair = cli("token", "issue", "--addr", server.grpc_addr, "--sub", "dave", "--aud", "orders",
               "--refresh", "--output", "env", cwd=tmp_path)
    assert pair.returncode == 0, pair.stderr
    values = dict(line.split("=", 1) for line in pair.stdout.splitlines())
    assert set(values) == {"ACCESS_TOKEN", "REFRESH_TOKEN"}

    first = cli("token", "refresh", values["REFRESH_TOKEN"], "--addr", server.grpc_addr,
                "-o", "json", cwd=tmp_path)
    assert first.returncode == 0 and '"access_token": "ey' in first.stdout
    spent = cli("token", "refresh", values["REFRESH_TOKEN"], "--addr", server.grpc_addr,
                cwd=tmp_path)
    assert spent.returncode == 1
    assert "UNAUTHENTICATED (REFRESH_TOKEN_REUSED)" in one_line_error(spent)  # docs/errors.md
    assert values["REFRESH_TOKEN"] not in spent.stderr  # never echo a secret

    revoked = cli("token", "revoke", "--token", values["ACCESS_TOKEN"], "--addr",
                  server.grpc_addr, cwd=tmp_path)
    assert (revoked.returncode, revoked.stdout) == (0, "revoked: 1\n")


@pytest.mark.parametrize("argv", [
    ["token", "issue", "--sub", "a", "--aud", "b", "--claims", "[1]"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--claims", "{"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--claims", '"text"'],
    ["token", "issue", "--sub", "a", "--aud", "b", "--ttl", "0"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--ttl", "-5"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--ttl", "ten"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--ttl", "99999999999"],
    ["token", "issue", "--sub", "a"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--timeout", "0"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--output", "yaml"],
    ["token", "issue", "--sub", "", "--aud", "b"],  # refused by the server: INVALID_ARGUMENT
    ["token", "issue", "--sub", "a", "--aud", "b", "--cert", "/nonexistent.pem"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--ca", "/nonexistent.pem"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--ca", "/etc/hostname"],
    ["token", "verify", "--aud", "b"],
    ["token", "verify", "x", "--aud", "b", "--output", "token"],
    ["token", "revoke", "--jti", "a", "--subject", "b"],
    ["token", "frobnicate"],
    ["token", "issue", "--sub", "a", "--aud", "b", "--addr", ""],
    ["dev", "--vault-port", "99999"],
    ["dev", "--grpc-listen", "8080"],
    ["dev", "--grpc-listen", "10.1.2.3:5000"],  # not loopback: not "port in use"
    ["dev", "--workers", "0"],
    ["serve", "--workers", "many"],
])
def test_bad_input_is_one_line_and_exit_2(server: RunningTokend, tmp_path: Path,
                                          argv: list[str]) -> None:
    result = cli(*argv, cwd=tmp_path, env=clean_env(TOKEND_ADDR=server.grpc_addr))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # nothing issued: --ttl 0 must not fall back to the default
    assert one_line_error(result).startswith("tokend")


def test_addr_anywhere_and_from_the_environment(server: RunningTokend, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    request = ("--sub", "erin", "--aud", "orders", "--output", "token")
    before = cli("token", "--addr", server.grpc_addr, "issue", *request, cwd=tmp_path)
    after = cli("token", "issue", *request, "--addr", server.grpc_addr, cwd=tmp_path)
    from_env = cli("token", "issue", *request, cwd=tmp_path,
                   env=clean_env(TOKEND_ADDR=server.grpc_addr))
    flag_wins = cli("token", "issue", *request, "--addr", server.grpc_addr, cwd=tmp_path,
                    env=clean_env(TOKEND_ADDR=dead))
    for result in (before, after, from_env, flag_wins):
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(".") == 2  # one bare JWT
    wrong = cli("token", "issue", *request, "--timeout", "3", cwd=tmp_path,
                env=clean_env(TOKEND_ADDR=dead))
    assert wrong.returncode == 3 and dead in wrong.stderr


def test_mutual_tls_flags_and_variables(bao: BaoDevServer, tmp_path: Path) -> None:
    with mtls_tokend(bao.addr, bao.token, tmp_path, identity="spiffe://tokend.test/cli",
                     policy=POLICY, vault={"key_name": "cli-mtls"}) as (_running, env):
        flags = ("--addr", env["TOKEND_ADDR"], "--ca", env["TOKEND_CA_FILE"], "--cert",
                 env["TOKEND_CLIENT_CERT"], "--key", env["TOKEND_CLIENT_KEY"])
        request = ("--sub", "frank", "--aud", "orders", "--output", "token")
        by_flags = cli("token", "issue", *request, *flags, cwd=tmp_path)
        assert by_flags.returncode == 0, by_flags.stderr
        by_env = cli("token", "verify", by_flags.stdout.strip(), "--aud", "orders",
                     cwd=tmp_path, env=clean_env(**env))
        assert by_env.returncode == 0 and by_env.stdout.startswith("valid: true")

        denied = cli("token", "issue", "--sub", "frank", "--aud", "billing", cwd=tmp_path,
                     env=clean_env(**env))
        assert denied.returncode == 4
        assert "PERMISSION_DENIED (POLICY_DENIED)" in one_line_error(denied)

        plaintext = cli("token", "issue", *request, "--timeout", "3", cwd=tmp_path,
                        env=clean_env(TOKEND_ADDR=env["TOKEND_ADDR"]))
        assert plaintext.returncode == 3 and "UNAVAILABLE" in one_line_error(plaintext)

        half = cli("token", "issue", *request, "--cert", env["TOKEND_CLIENT_CERT"],
                   cwd=tmp_path, env=clean_env(TOKEND_ADDR=env["TOKEND_ADDR"]))
        assert half.returncode == 2 and "--key" in one_line_error(half)


def test_version_and_help_on_every_flag(tmp_path: Path) -> None:
    version = cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and re.fullmatch(r"tokend \d+\.\d+\.\d+\S*\n", version.stdout)

    from tokend.cli import _parser

    def walk(parser: object) -> Iterator[tuple[str, object]]:
        for action in parser._actions:  # type: ignore[attr-defined]
            if action.option_strings or action.dest not in ("command", "action"):
                yield parser.prog, action  # type: ignore[attr-defined]
            for sub in getattr(action, "choices", None) or {}:
                if not isinstance(action.choices, dict):
                    break
                yield from walk(action.choices[sub])

    missing = [f"{prog} {action.option_strings or action.dest}"  # type: ignore[attr-defined]
               for prog, action in walk(_parser())
               if not action.help]  # type: ignore[attr-defined]
    assert missing == []
