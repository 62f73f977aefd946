"""Issue 13 item 1: an identity cannot be spelled in another kind of name.

Only a certificate's one URI SAN (scheme spiffe) carries a SPIFFE ID. A CN or a DNS SAN
that reads `spiffe://…` is a CN or a DNS name: it gets no SPIFFE entry, no SPIFFE
`client_id` and no SPIFFE attribution in the audit. Against a running mutual-TLS server.
The policy uses only the `identity: spiffe://…` form, which tokend has always accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.api.test_mtls_policy import audit_events, code_of, issue_request, stub_for
from tests.support.bao import BaoDevServer
from tests.support.pki import TestCA
from tests.support.tokend import RunningTokend, mtls_settings
from tokend.api.identity import Identity, identity_from_pem
from tokend_client.v1 import tokend_pb2 as pb

CHECKOUT = "spiffe://cluster.local/ns/checkout/sa/checkout"
POLICY = f"""\
callers:
  - identity: "{CHECKOUT}"
    rpcs: [Issue, Refresh, Revoke]
    issue: {{audiences: ["payments-api"]}}
"""


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory)
        self.server = self.ca.server()
        self.checkout = self.ca.client("checkout", spiffe=CHECKOUT)
        # The same string in the wrong kind of name: a CN, a DNS SAN.
        self.cn_spelled = self.ca.client("cn-spelled", cn=CHECKOUT)
        self.dns_spelled = self.ca.client("dns-spelled", dns=(CHECKOUT,))
        # Two URI SANs, the first the real SPIFFE ID: not an X.509-SVID.
        self.two_uris = self.ca.client("two-uris", spiffe=CHECKOUT,
                                       uris=("spiffe://cluster.local/ns/other/sa/x",))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    directory = tmp_path_factory.mktemp("kinds")
    settings = mtls_settings(
        bao.addr, bao.token, directory, policy=POLICY, vault={"key_name": "identity-kinds"},
        audit_log=str(directory / "audit.log"),
        server_cert=pki.server.cert_file, server_key=pki.server.key_file,
        client_ca=pki.ca.cert_file)
    with RunningTokend(settings, tls_client=(pki.ca.cert_file, pki.checkout)) as running:
        yield running


@pytest.mark.parametrize("who", ["cn_spelled", "dns_spelled"])
def test_a_spiffe_id_spelled_in_another_kind_of_name_gets_nothing(
        server: RunningTokend, pki: Pki, who: str) -> None:
    kind = {"cn_spelled": "cn", "dns_spelled": "dns"}[who]
    attacker = stub_for(server, pki.ca.cert_file, getattr(pki, who))
    victim_token = server.stub.Issue(issue_request(subject="victim"), timeout=5)
    calls = {
        "Issue": lambda: attacker.Issue(issue_request(), timeout=5),
        "Revoke": lambda: attacker.Revoke(pb.RevokeRequest(jti=victim_token.jti), timeout=5),
        "Refresh": lambda: attacker.Refresh(pb.RefreshRequest(refresh_token="tkd_rt_x"),
                                            timeout=5),
    }
    for rpc, call in calls.items():
        code, message = code_of(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED, (rpc, message)
        assert f"'{kind}:{CHECKOUT}'" in message
    denied = [e for e in audit_events(server) if e["event"] == "authz.denied"]
    assert denied[-1]["caller"] == f"{kind}:{CHECKOUT}"
    # The victim's token was not revoked by the impostor.
    assert server.stub.Verify(pb.VerifyRequest(token=victim_token.access_token,
                                               audience="payments-api"), timeout=5).valid
    # Open RPCs still answer, and the audit names the caller with its kind.
    assert not attacker.Verify(pb.VerifyRequest(token="x.y.z", audience="a"), timeout=5).valid
    rejected = [e for e in audit_events(server) if e["event"] == "rpc.Verify"]
    assert rejected[-1]["caller"] == f"{kind}:{CHECKOUT}"


def test_the_real_spiffe_id_gets_its_entry_and_client_id(server: RunningTokend,
                                                         pki: Pki) -> None:
    issued = server.stub.Issue(issue_request(), timeout=5)
    claims = server.stub.Verify(pb.VerifyRequest(token=issued.access_token,
                                                 audience="payments-api"), timeout=5).claims
    assert claims["client_id"] == CHECKOUT
    (event,) = [e for e in audit_events(server)
                if e["event"] == "rpc.Issue" and e.get("jti") == issued.jti]
    assert event["caller"] == CHECKOUT


def test_a_certificate_with_two_uri_sans_is_refused(server: RunningTokend, pki: Pki) -> None:
    """SPIFFE X509-SVID §2 and §5.2: validators MUST reject an SVID with more than one
    URI SAN, even when the first is a SPIFFE ID the policy knows."""
    stub = stub_for(server, pki.ca.cert_file, pki.two_uris)
    code, message = code_of(lambda: stub.Issue(issue_request(), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "2 URI SANs" in message
    code, _ = code_of(lambda: next(iter(stub.WatchJwks(pb.WatchJwksRequest(), timeout=5))))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    refused = [e for e in audit_events(server) if e["event"] == "authn.refused"]
    assert refused and "2 URI SANs" in refused[-1]["error"]


@pytest.mark.parametrize(("sans", "label"), [
    ({"spiffe": CHECKOUT, "dns": ("checkout.svc",)}, CHECKOUT),
    ({"dns": ("Reader.Example",)}, "dns:reader.example"),  # RFC 4343: caseless
    ({"cn": CHECKOUT}, f"cn:{CHECKOUT}"),
    ({"uris": ("https://example.test/x",), "cn": "svc"}, "cn:svc"),  # not a spiffe URI
])
def test_identity_of_a_certificate(tmp_path: Path, sans: dict, label: str) -> None:
    issued = TestCA(tmp_path).client("c", **sans)
    found = identity_from_pem(issued.cert_file.read_bytes())
    assert isinstance(found, Identity) and found.label == label


@pytest.mark.parametrize(("sans", "reason"), [
    ({"spiffe": "SPIFFE://cluster.local/ns/a"}, "not a valid SPIFFE ID"),
    ({"spiffe": "spiffe://cluster.local"}, "not a valid SPIFFE ID"),  # no path: not a leaf
    ({"spiffe": "spiffe://cluster.local/ns/../sa"}, "not a valid SPIFFE ID"),
    ({"spiffe": "spiffe://cluster.local/ns?x=1"}, "not a valid SPIFFE ID"),
    ({"uris": ("https://a.test/", "https://b.test/")}, "2 URI SANs"),
])
def test_certificates_without_a_trustworthy_identity(tmp_path: Path, sans: dict,
                                                     reason: str) -> None:
    issued = TestCA(tmp_path).client("c", **sans)
    found = identity_from_pem(issued.cert_file.read_bytes())
    assert isinstance(found, str) and reason in found
