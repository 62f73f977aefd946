"""Server CPU per verified token: one unary Verify per token against VerifyMany batches,
on a real `tokend serve` process (real OpenBao, gRPC over loopback). Not a test: run by
scripts/measure-verify-many. Bounded: --tokens per phase, every call with a deadline.

Two kinds of token: `repeated` (each verified before: the verified-token cache answers)
and `unique` (each verified for the first time: signature checked, distinct `iat`/jti).
CPU is the server process's user+system time (/proc/<pid>/stat, in clock ticks) over
the phase."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.faults.procs import TokendProcess, replica_config
from tests.support.bao import BaoDevServer
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

AUDIENCE = "orders"
TIMEOUT = 30.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_for(stub: tokend_pb2_grpc.TokenServiceStub, count: int) -> list[pb.VerifyRequest]:
    tokens = [stub.Issue(pb.IssueRequest(subject=f"bench-{i}", audience=[AUDIENCE]),
                         timeout=TIMEOUT).access_token for i in range(count)]
    return [pb.VerifyRequest(token=token, audience=AUDIENCE) for token in tokens]


def send(stub: tokend_pb2_grpc.TokenServiceStub, batch: int
         ) -> Callable[[list[pb.VerifyRequest]], None]:
    def run(requests: list[pb.VerifyRequest]) -> None:
        if batch == 1:
            for request in requests:
                stub.Verify(request, timeout=TIMEOUT)
            return
        for start in range(0, len(requests), batch):
            stub.VerifyMany(pb.VerifyManyRequest(requests=requests[start:start + batch]),
                            timeout=TIMEOUT)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4096,
                        help="tokens per phase (CPU is read in 10 ms ticks: keep it large)")
    parser.add_argument("--batches", default="1,16,64,256",
                        help="batch sizes (1: unary Verify)")
    args = parser.parse_args()
    count = min(max(args.tokens, 256), 50_000)
    sizes = [int(size) for size in args.batches.split(",")]
    print(f"{'tokens':9} {'batch':>5} {'server CPU µs/token':>20} {'wall µs/token':>14} "
          f"{'tokens per CPU-s':>17}")
    with BaoDevServer() as bao, tempfile.TemporaryDirectory() as directory:
        config = replica_config(bao.addr, bao.token, f"sqlite:///{directory}/t.db",
                                "bench-verify-many",
                                # Issuing the unique tokens is not what is measured.
                                rate_limit={"per_second": 1e6, "burst": 1_000_000})
        with TokendProcess(config, Path(directory)) as process:
            stub, pid = process.stub, process.pid
            assert pid is not None
            repeated = requests_for(stub, min(count, 256))
            send(stub, 1)(repeated)  # into the verified-token cache
            for kind in ("repeated", "unique"):
                for size in sizes:
                    requests = (repeated * (count // len(repeated) + 1))[:count] \
                        if kind == "repeated" else requests_for(stub, count)
                    cpu, wall = cpu_seconds(pid), time.perf_counter()
                    send(stub, size)(requests)
                    cpu, wall = cpu_seconds(pid) - cpu, time.perf_counter() - wall
                    print(f"{kind:9} {size:5} {1e6 * cpu / count:20.1f} "
                          f"{1e6 * wall / count:14.1f} {count / max(cpu, 1e-9):17,.0f}",
                          flush=True)


if __name__ == "__main__":
    main()
