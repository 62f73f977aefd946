"""Kubernetes login: OpenBao asks a (stand-in) TokenReview API about the pod's JWT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.k8s_tokenreview import TokenReviewServer
from tests.support.tokend import RunningTokend
from tests.vault.helpers import (
    POLICY,
    enable_auth,
    issue_and_verify,
    login_settings,
    start_error,
    vault_status,
)


@pytest.fixture(scope="module")
def k8s(vault: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[TokenReviewServer]:
    """The TokenReview stand-in, and auth/kubernetes configured as docs/vault.md says."""
    with TokenReviewServer(tmp_path_factory.mktemp("k8s")) as api:
        client = vault.client()
        enable_auth(client, "kubernetes")
        # Vault runs outside the "cluster": it calls TokenReview with a reviewer JWT.
        client.write("auth/kubernetes/config", kubernetes_host=api.url,
                     kubernetes_ca_cert=api.ca_pem, token_reviewer_jwt=api.reviewer_jwt,
                     disable_local_ca_jwt=True)
        client.write("auth/kubernetes/role/tokend",
                     bound_service_account_names=api.service_account,
                     bound_service_account_namespaces=api.namespace,
                     audience=api.audience,
                     token_policies=POLICY, token_no_default_policy=True,
                     token_ttl="1h", token_max_ttl="24h")
        yield api


def k8s_auth(jwt_file: Path) -> dict[str, object]:
    return {"method": "kubernetes", "role": "tokend", "jwt_file": jwt_file}


def test_kubernetes_login_issues(vault: BaoDevServer, k8s: TokenReviewServer,
                                 tmp_path: Path) -> None:
    jwt_file = tmp_path / "token"
    jwt_file.write_text(k8s.jwt)
    reviewed = k8s.reviews["authenticated"]
    with RunningTokend(login_settings(vault.addr, tmp_path, k8s_auth(jwt_file))) as server:
        issue_and_verify(server)
        assert vault_status(server).method == "kubernetes"
    assert k8s.reviews["authenticated"] == reviewed + 1  # Vault really asked the API


def test_wrong_jwt_is_refused_at_start(vault: BaoDevServer, k8s: TokenReviewServer,
                                       tmp_path: Path) -> None:
    # Right service account name, namespace and audience, but a token the cluster
    # never issued.
    forged = k8s.make_jwt(k8s.namespace, k8s.service_account, "another-uid",
                          audience=k8s.audience)
    jwt_file = tmp_path / "token"
    jwt_file.write_text(forged)
    rejected = k8s.reviews["rejected"]
    message = str(start_error(login_settings(vault.addr, tmp_path, k8s_auth(jwt_file))))
    assert message.startswith("Vault refused the Kubernetes login at auth/kubernetes/login")
    assert str(jwt_file) in message
    for secret in (forged, k8s.jwt, k8s.reviewer_jwt):
        assert secret not in message
    assert k8s.reviews["rejected"] == rejected + 1
