"""The load generators' verify-many mode (bench/loadgen-go, bench/loadgen.py): against a
real `tokend serve` it verifies `--batch` tokens per VerifyMany call and reports figures per
token; against a server without the RPC it says UNIMPLEMENTED and exits 0, so the
benchmark's row says so instead of the run failing. Tiny counts; no timing is asserted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from bench import servers
from tests.support.bao import BaoDevServer
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

KEY = "bench-loadgen-test"


@pytest.fixture(scope="module")
def go_loadgen(tmp_path_factory: pytest.TempPathFactory) -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    binary = tmp_path_factory.mktemp("loadgen") / "loadgen"
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=servers.ROOT / "bench" / "loadgen-go",
                   env={**os.environ, "GOFLAGS": "-mod=readonly"}, check=True, timeout=600)
    return str(binary)


def _programs(go_loadgen: str) -> dict[str, list[str]]:
    return {"go": [go_loadgen], "python": [sys.executable, "-m", "bench.loadgen"]}


def _run(program: list[str], addr: str, rpc: str, *args: str) -> dict:
    done = subprocess.run([*program, "--addr", addr, "--rpc", rpc, "--max-seconds", "10",
                           "--warmup", "0", "--concurrency", "2", "--channels", "1", *args],
                          cwd=servers.ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return servers.loads_json_line(done.stdout)


@pytest.fixture(scope="module")
def tokend(tmp_path_factory: pytest.TempPathFactory, go_loadgen: str
           ) -> Iterator[tuple[servers.Tokend, Path]]:
    work = tmp_path_factory.mktemp("tokend")
    with BaoDevServer() as bao:
        servers.create_transit_key(bao, KEY, "ecdsa-p256")
        with servers.tokend_running(bao, work, KEY, "ES256", 1) as running:
            pool = work / "tokens.txt"
            issued = _run([go_loadgen], running.grpc_addr, "issue", "--max-count", "40",
                          "--save-tokens", str(pool))
            assert issued["count"] == 40 and len(pool.read_text().split()) == 40
            yield running, pool


@pytest.mark.timeout(300)
@pytest.mark.parametrize("language", ["go", "python"])
def test_verify_many_reports_tokens_and_cpu_per_token(
        language: str, go_loadgen: str, tokend: tuple[servers.Tokend, Path]) -> None:
    running, pool = tokend
    pids = [arg for pid in running.pids for arg in ("--server-pid", str(pid))]
    row = _run(_programs(go_loadgen)[language], running.grpc_addr, "verify-many",
               "--tokens", str(pool), "--cycle", "--batch", "8", "--max-count", "6", *pids)
    assert row["errors"] == 0, row["first_error"]
    assert "unimplemented" not in row
    assert row["count"] == 6 and row["batch"] == 8 and row["tokens"] == 48
    assert row["tokens_per_s"] == pytest.approx(8 * row["rps"], rel=0.01)
    assert row["server_cpu_us_per_token"] is not None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("language", ["go", "python"])
def test_a_cycle_goes_on_where_the_last_phase_stopped(
        language: str, go_loadgen: str, tokend: tuple[servers.Tokend, Path]) -> None:
    """--start and next_token: the benchmark chains phases on one server through the pool,
    so that across phases too a token comes round only after the cache has dropped it."""
    running, pool = tokend
    program = _programs(go_loadgen)[language]
    one = _run(program, running.grpc_addr, "verify", "--tokens", str(pool), "--cycle",
               "--start", "35", "--max-count", "10")
    assert one["count"] == 10 and one["next_token"] == 5  # 35 + 10 wraps round 40
    many = _run(program, running.grpc_addr, "verify-many", "--tokens", str(pool), "--cycle",
                "--start", str(one["next_token"]), "--batch", "8", "--max-count", "3")
    assert many["tokens"] == 24 and many["next_token"] == 29


@pytest.mark.timeout(300)
@pytest.mark.parametrize("language", ["go", "python"])
def test_verify_many_counts_a_refused_token_as_an_error(
        language: str, go_loadgen: str, tokend: tuple[servers.Tokend, Path],
        tmp_path: Path) -> None:
    """Every result must be valid: a batch with a forged token is an error, not a figure."""
    running, pool = tokend
    tokens = pool.read_text().split()
    forged = tmp_path / "forged.txt"
    forged.write_text("\n".join([*tokens[:3], tokens[3][:-4] + "AAAA"]) + "\n")
    row = _run(_programs(go_loadgen)[language], running.grpc_addr, "verify-many",
               "--tokens", str(forged), "--batch", "4", "--max-count", "1")
    assert row["count"] == 0 and row["errors"] == 1 and "refused" in row["first_error"]


class _OnlyVerify(tokend_pb2_grpc.TokenServiceServicer):
    """A stand-in for a tokend older than VerifyMany: every other method answers
    UNIMPLEMENTED (the generated base class), which a real tokend cannot be made to do."""

    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext
               ) -> pb.VerifyResponse:
        return pb.VerifyResponse(valid=True)


@pytest.fixture
def older_server() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    tokend_pb2_grpc.add_TokenServiceServicer_to_server(_OnlyVerify(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("language", ["go", "python"])
def test_a_server_without_verify_many_is_reported_not_crashed_on(
        language: str, go_loadgen: str, older_server: str, tmp_path: Path) -> None:
    pool = tmp_path / "tokens.txt"
    pool.write_text("a.b.c\n" * 64)
    row = _run(_programs(go_loadgen)[language], older_server, "verify-many", "--tokens",
               str(pool), "--cycle", "--batch", "16", "--max-count", "1000")
    assert row["unimplemented"] is True and row["count"] == 0 and row["tokens"] == 0
    assert 1 <= row["errors"] <= 2, "each caller stops at its first UNIMPLEMENTED"
    assert "Unimplemented" in row["first_error"] or "UNIMPLEMENTED" in row["first_error"]
    # The unary path still works against it: the mode is what it lacks.
    assert _run(_programs(go_loadgen)[language], older_server, "verify", "--tokens",
                str(pool), "--max-count", "5")["count"] == 5
