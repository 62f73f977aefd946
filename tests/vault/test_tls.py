"""TLS to Vault: tokend checks Vault's certificate and presents its own client certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pki import TestCA
from tests.support.tokend import RunningTokend, make_settings
from tests.vault.helpers import issue_and_verify, start_error
from tests.vault.tls_bao import TlsBao
from tokend.config import Settings


@pytest.fixture(scope="module")
def tls_bao() -> Iterator[TlsBao]:
    with TlsBao() as server:
        yield server


def tls_settings(bao: TlsBao, data_dir: Path, **vault: object) -> Settings:
    cert = bao.client_cert
    return make_settings(bao.addr, bao.token, data_dir, vault={
        "key_name": "tls", "cacert": str(bao.ca.cert_file),
        "client_cert": str(cert.cert_file), "client_key": str(cert.key_file), **vault})


def test_mutual_tls_to_vault(tls_bao: TlsBao, tmp_path: Path) -> None:
    with RunningTokend(tls_settings(tls_bao, tmp_path)) as server:
        issue_and_verify(server)


def test_missing_client_certificate_is_explained(tls_bao: TlsBao, tmp_path: Path) -> None:
    message = str(start_error(tls_settings(tls_bao, tmp_path, client_cert=None, client_key=None)))
    assert tls_bao.addr in message and "VAULT_CLIENT_CERT" in message
    assert tls_bao.token not in message


def test_untrusted_vault_certificate_is_refused(tls_bao: TlsBao, tmp_path: Path) -> None:
    other_ca = TestCA(tmp_path / "other", name="some other CA")
    message = str(start_error(tls_settings(tls_bao, tmp_path, cacert=str(other_ca.cert_file))))
    assert tls_bao.addr in message and "VAULT_CACERT" in message


@pytest.mark.parametrize("setting", ["cacert", "client_cert"])
def test_missing_certificate_file_is_named(tls_bao: TlsBao, tmp_path: Path,
                                           setting: str) -> None:
    missing = str(tmp_path / "absent.pem")
    error = start_error(tls_settings(tls_bao, tmp_path, **{setting: missing}))
    assert missing in str(error) and tls_bao.addr in str(error)
    assert error.reason == "unreachable"  # the upkeep retries: the file may yet appear
