"""The one gRPC service config every tokend client uses (clients/service-config.json).

Languages that cannot read the repository at run time carry a copy; each copy must be
byte-for-byte the source, and the source must say what docs/clients.md promises.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "clients" / "service-config.json"
COPIES = [
    "clients/python/tokend_client/service_config.json",
    "clients/go/tokend/service-config.json",
    "clients/node/src/service-config.json",
]
UNARY = {"Issue", "Verify", "VerifyMany", "Refresh", "Revoke", "GetJwks", "Exchange"}


@pytest.mark.parametrize("copy", COPIES)
def test_every_copy_is_the_source(copy: str) -> None:
    assert (ROOT / copy).read_bytes() == SOURCE.read_bytes(), \
        f"{copy} drifted: cp clients/service-config.json {copy}"


def test_the_source_says_what_the_docs_promise() -> None:
    config = json.loads(SOURCE.read_text())
    timeouts: dict[str, str] = {}
    for method in config["methodConfig"]:
        for name in method["name"]:
            assert name["service"] == "tokend.v1.TokenService"
            timeouts[name["method"]] = method["timeout"]
        policy = method["retryPolicy"]
        # UNAVAILABLE only: every other code is an answer (docs/clients.md).
        assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
        assert 2 <= policy["maxAttempts"] <= 5
    # The streams have no deadline and no retry policy: LiveSource reconnects them.
    assert set(timeouts) == UNARY
    assert timeouts == {"Verify": "5s", "VerifyMany": "5s", "GetJwks": "5s", "Revoke": "5s",
                        "Issue": "10s", "Refresh": "10s", "Exchange": "10s"}
