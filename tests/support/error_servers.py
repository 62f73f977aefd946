"""Three real tokends on loopback that together answer every error reason that can happen
over the wire, for the error-details tests of every client (docs/errors.md).

The cases themselves are data, shared by the Python and Go runners so the two cannot drift:
conformance/errors/cases.json. A case names a server and a caller, both resolved through
the TOKEND_ERRORS_* variables `error_servers` yields:

* servers: ``main`` (mutual TLS, the policy below), ``degraded`` (the same, after its Vault
  and its PostgreSQL store were cut off: signing fails, store writes fail, Verify fails
  closed on a stale denylist), ``starting`` (still waiting for a Vault that never answers);
  TOKEND_ERRORS_ADDR_<SERVER>.
* callers: client certificates from one test CA (TOKEND_ERRORS_CA_FILE), each
  TOKEND_ERRORS_CERT_<CALLER> / TOKEND_ERRORS_KEY_<CALLER>: ``main`` (allowed), ``limited``
  (rate limit burst 1), ``stranger`` (not in the policy) and ``unusable`` (two URI SANs).
* TOKEND_ERRORS_VARS: a JSON object of values a request names as ``${name}``
  (``degraded_token``: an access token the degraded server issued before its cut;
  ``main_token``: one the main server issued to the main caller, for errors-api).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc

from tests.faults.proxy import LoopbackProxy
from tests.support.bao import BaoDevServer
from tests.support.pki import Issued, TestCA
from tests.support.tokend import RunningTokend, make_settings
from tokend.app import App
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
CASES_FILE = REPO / "conformance" / "errors" / "cases.json"
AUDIENCE = "errors-api"
# The limited caller's bucket: one call, then a token back every 20 s.
LIMITED_PER_SECOND = 0.05
POLICY = f"""
callers:
  - identity: "spiffe://tokend.test/errors"
    rpcs: [Issue, Refresh, Revoke, Exchange]
    issue: {{audiences: ["errors-*"], scopes: ["*"], claims: ["*"]}}
    exchange: {{from_audiences: ["errors-*"], audiences: ["errors-*"], scopes: ["*"]}}
  - identity: "spiffe://tokend.test/limited"
    rpcs: [Issue, Refresh, Revoke]
    rate_limit: {{per_second: {LIMITED_PER_SECOND}, burst: 1}}
    issue: {{audiences: ["errors-*"], scopes: ["*"]}}
"""
# The degraded server answers "valid" only with a denylist read within this long.
STALENESS_LIMIT = 1.0


def cases() -> list[dict[str, Any]]:
    return json.loads(CASES_FILE.read_text())["cases"]


def _callers(ca: TestCA) -> dict[str, Issued]:
    return {
        "main": ca.client("main", spiffe="spiffe://tokend.test/errors"),
        "limited": ca.client("limited", spiffe="spiffe://tokend.test/limited"),
        "stranger": ca.client("stranger", spiffe="spiffe://tokend.test/stranger"),
        # SPIFFE X509-SVID §2: exactly one URI SAN; two name no usable identity.
        "unusable": ca.client("unusable", spiffe="spiffe://tokend.test/errors",
                              uris=("spiffe://tokend.test/other",)),
    }


def _tls(ca: TestCA, server: Issued) -> dict[str, Any]:
    return {"cert_file": server.cert_file, "key_file": server.key_file,
            "client_ca_file": ca.cert_file}


def channel(addr: str, ca_file: Path, client: Issued) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(), private_key=client.key_file.read_bytes(),
        certificate_chain=client.cert_file.read_bytes())
    return grpc.secure_channel(addr, credentials)


@contextmanager
def error_servers(bao: BaoDevServer, postgres_url: str, directory: Path
                  ) -> Iterator[dict[str, str]]:
    ca = TestCA(directory / "pki")
    server_cert = ca.server()
    callers = _callers(ca)
    policy_file = directory / "policy.yaml"
    policy_file.write_text(POLICY)
    common: dict[str, Any] = {"insecure_plaintext": False, "policy_file": policy_file,
                              "tls": _tls(ca, server_cert)}
    with ExitStack() as stack:
        main = stack.enter_context(RunningTokend(make_settings(
            bao.addr, bao.token, directory / "main", vault={"key_name": "errors"},
            streams={"max_per_caller": 1, "max_total": 10},
            audit_log=str(directory / "main-audit.jsonl"), **common)))
        with channel(main.grpc_addr, ca.cert_file, callers["main"]) as chan:
            main_token = tokend_pb2_grpc.TokenServiceStub(chan).Issue(
                pb.IssueRequest(subject="exchanged", audience=[AUDIENCE]), timeout=10
            ).access_token
        degraded_addr, degraded_token = stack.enter_context(
            _degraded(bao, postgres_url, directory / "degraded", ca, callers["main"], common))
        starting_addr = stack.enter_context(_starting(directory / "starting", common))
        env = {
            "TOKEND_ERRORS_CASES": str(CASES_FILE),
            "TOKEND_ERRORS_CA_FILE": str(ca.cert_file),
            "TOKEND_ERRORS_ADDR_MAIN": main.grpc_addr,
            "TOKEND_ERRORS_ADDR_DEGRADED": degraded_addr,
            "TOKEND_ERRORS_ADDR_STARTING": starting_addr,
            "TOKEND_ERRORS_AUDIENCE": AUDIENCE,
            "TOKEND_ERRORS_AUDIT_LOG": str(directory / "main-audit.jsonl"),
            "TOKEND_ERRORS_VARS": json.dumps({"degraded_token": degraded_token,
                                              "main_token": main_token}),
        }
        for name, issued in callers.items():
            env[f"TOKEND_ERRORS_CERT_{name.upper()}"] = str(issued.cert_file)
            env[f"TOKEND_ERRORS_KEY_{name.upper()}"] = str(issued.key_file)
        yield env


@contextmanager
def _degraded(bao: BaoDevServer, postgres_url: str, directory: Path, ca: TestCA,
              client: Issued, common: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """A tokend whose Vault and store go through proxies, cut once it has issued a token."""
    directory.mkdir(parents=True)
    vault_port = int(bao.addr.rsplit(":", 1)[1])
    prefix, rest = postgres_url.split("@", 1)
    pg_port = int(rest.split("/", 1)[0].rsplit(":", 1)[1])
    with LoopbackProxy(vault_port) as vault_proxy, LoopbackProxy(pg_port) as pg_proxy:
        store_url = f"{prefix}@127.0.0.1:{pg_proxy.port}/{rest.split('/', 1)[1]}"
        settings = make_settings(
            f"http://127.0.0.1:{vault_proxy.port}", bao.token, directory,
            vault={"key_name": "errors", "timeout": 2}, store_url=store_url,
            revocation_poll_interval=0.2,
            tokens={"revocation_max_staleness": STALENESS_LIMIT},
            signing={"probe_interval": 30}, **common)
        with RunningTokend(settings) as running, \
                channel(running.grpc_addr, ca.cert_file, client) as chan:
            stub = tokend_pb2_grpc.TokenServiceStub(chan)
            token = stub.Issue(pb.IssueRequest(subject="degraded", audience=[AUDIENCE]),
                               timeout=10).access_token
            vault_proxy.cut()
            pg_proxy.cut()
            _wait_until_degraded(stub, token)
            yield running.grpc_addr, token


def _wait_until_degraded(stub: tokend_pb2_grpc.TokenServiceStub, token: str) -> None:
    """Until Verify fails closed and Issue fails fast (the signing circuit is open)."""
    deadline = time.monotonic() + 30
    stale = opened = False
    while not (stale and opened):
        assert time.monotonic() < deadline, "the degraded tokend did not degrade in 30 s"
        time.sleep(0.2)
        try:
            stub.Verify(pb.VerifyRequest(token=token, audience=AUDIENCE), timeout=5)
        except grpc.RpcError as exc:
            stale = exc.code() == grpc.StatusCode.UNAVAILABLE
        try:
            stub.Issue(pb.IssueRequest(subject="degraded", audience=[AUDIENCE]), timeout=10)
        except grpc.RpcError as exc:
            opened = exc.code() == grpc.StatusCode.UNAVAILABLE and "next check" in (
                exc.details() or "")


@contextmanager
def _starting(directory: Path, common: dict[str, Any]) -> Iterator[str]:
    """A tokend that listens but waits for a Vault that is not there (start-up)."""
    directory.mkdir(parents=True)
    absent = BaoDevServer()  # never started: its address refuses connections
    settings = make_settings(absent.addr, absent.token, directory,
                             vault={"key_name": "errors", "startup_timeout": 600}, **common)
    app = App(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    starting: list[asyncio.Task[None]] = []

    async def start() -> None:
        starting.append(asyncio.current_task())  # type: ignore[arg-type]
        await app.start()

    async def stop() -> None:
        # A cancelled start stops what it started itself; stop() once more is a no-op.
        starting[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting[0]
        await app.stop(grace=0)

    started = asyncio.run_coroutine_threadsafe(start(), loop)
    try:
        deadline = time.monotonic() + 10
        while app.grpc_port == 0:
            assert time.monotonic() < deadline and not started.done(), "did not listen"
            time.sleep(0.05)
        yield f"127.0.0.1:{app.grpc_port}"
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        absent.close()
