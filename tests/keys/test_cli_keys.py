"""`tokend keys init | rotate | list` against a real OpenBao, as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from tests.keys.vault_docs import doc_block, token_with
from tests.support.bao import BaoDevServer
from tests.support.tokend import make_settings
from tokend.app import App
from tokend.cli import main
from tokend.keys.lifecycle import parse_time

DELAY = 30  # vault.propagation_delay in the settings below


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    # The commands configure logging for the process (warnings only, on stderr); put the
    # suite's configuration back afterwards.
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def config(tmp_path: Path, bao: BaoDevServer, **vault: Any) -> tuple[Path, str]:
    """A settings file like the service's (TLS and all), naming a fresh key."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    values = {
        "grpc_listen": "0.0.0.0:50051",  # serving settings: the keys commands ignore them
        "tls": {"cert_file": "/nonexistent/cert.pem", "key_file": "/nonexistent/key.pem"},
        "jwks_max_age": 20,
        "jwks_consumer_refresh": 0,  # no mesh consumer: DELAY covers jwks_max_age alone
        "tokens": {"max_ttl": "10m", "default_ttl": "5m", "leeway": 5},
        "vault": {"addr": bao.addr, "token": bao.token, "key_name": name,
                  "key_refresh_interval": 5, "propagation_delay": DELAY, **vault},
    }
    path = tmp_path / "tokend.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def listing(capsys: pytest.CaptureFixture[str], path: Path) -> list[dict[str, Any]]:
    code, out, err = run(capsys, "keys", "list", "--json", "--config", str(path))
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("custody", ["kv", "transit"])
def test_init_rotate_list(tmp_path: Path, bao: BaoDevServer,
                          capsys: pytest.CaptureFixture[str], custody: str) -> None:
    path, name = config(tmp_path, bao, custody=custody)
    code, out, err = run(capsys, "keys", "init", "--custody", custody, "--config", str(path))
    assert code == 0, err
    assert f"created {name}-v1 (ES256, custody {custody}" in out and "signs at once" in out
    [first] = listing(capsys, path)
    assert (first["version"], first["kid"], first["phase"]) == (1, f"{name}-v1", "active")

    code, out, err = run(capsys, "keys", "rotate", "--config", str(path))
    assert code == 0, err
    assert f"created {name}-v2" in out and f"{name}-v1 then retires" in out
    activates = re.search(r"signs from (\S+) \(in (\d+)s\)", out)
    assert activates is not None and 25 <= int(activates[2]) <= DELAY

    old, new = listing(capsys, path)
    assert (old["phase"], new["phase"]) == ("active", "next")
    assert new["activates"] == activates[1] == old["retires"]
    assert parse_time(new["activates"]) - parse_time(new["created"]) == pytest.approx(DELAY)
    # The old version stays published for tokens.max_ttl + leeway after it stops signing.
    assert parse_time(old["gone"]) - parse_time(old["retires"]) == pytest.approx(605)
    assert bao.token not in out + err


def test_list_as_a_table(tmp_path: Path, bao: BaoDevServer,
                         capsys: pytest.CaptureFixture[str]) -> None:
    path, name = config(tmp_path, bao)
    assert run(capsys, "keys", "init", "--config", str(path))[0] == 0  # custody transit
    out = run(capsys, "keys", "list", "--config", str(path))[1]
    header, row = out.strip().splitlines()
    assert header.split() == ["VERSION", "KID", "PHASE", "CREATED", "ACTIVATES", "RETIRES", "GONE"]
    assert row.split()[:3] == ["1", f"{name}-v1", "active"] and row.split()[-2:] == ["-", "-"]


def test_init_twice_is_refused(tmp_path: Path, bao: BaoDevServer,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = config(tmp_path, bao, custody="kv")
    assert run(capsys, "keys", "init", "--config", str(path))[0] == 0
    code, out, err = run(capsys, "keys", "init", "--config", str(path))
    assert code == 2 and not out
    assert "already exists" in err and "tokend keys rotate" in err


def test_init_of_another_custody_than_configured_says_so(
        tmp_path: Path, bao: BaoDevServer, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = config(tmp_path, bao)
    code, out, _ = run(capsys, "keys", "init", "--custody", "kv", "--config", str(path))
    assert code == 0 and "the settings say vault.custody: transit; set it to kv" in out


@pytest.mark.parametrize("custody", ["kv", "transit"])
def test_rotating_a_missing_key_says_how_to_create_it(
        tmp_path: Path, bao: BaoDevServer, capsys: pytest.CaptureFixture[str],
        custody: str) -> None:
    path, name = config(tmp_path, bao, custody=custody, create_key=True)
    code, out, err = run(capsys, "keys", "rotate", "--config", str(path))
    assert code == 2 and not out
    assert "does not exist" in err and name in err  # create_key does not apply here


def test_settings_errors_are_named(tmp_path: Path, bao: BaoDevServer,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = config(tmp_path, bao, propagation_delay=10)  # below jwks_max_age 20 + 5
    code, _, err = run(capsys, "keys", "list", "--config", str(path))
    assert code == 2 and "vault.propagation_delay (10s) must be at least" in err


def test_operator_token_from_the_environment(tmp_path: Path, bao: BaoDevServer,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The service's file names its AppRole; the operator logs in with a token of their
    # own holding the documented operator policy.
    path, name = config(tmp_path, bao, custody="kv", token=None,
                        auth={"method": "approle", "role_id": "r", "secret_id": "s"})
    operator = token_with(bao, name, doc_block("# tokend keys init / rotate / list"))
    monkeypatch.setenv("TOKEND_VAULT__AUTH__METHOD", "token")
    monkeypatch.setenv("VAULT_TOKEN", operator)
    for action in ("init", "rotate", "list"):
        code, out, err = run(capsys, "keys", action, "--config", str(path))
        assert code == 0, err
        assert operator not in out + err
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("HOME", str(tmp_path))  # bao -dev leaves its root token in ~/.vault-token
    code, _, err = run(capsys, "keys", "list", "--config", str(path))
    assert code == 2 and "no Vault token" in err


def test_the_service_refuses_to_start_with_a_short_propagation_delay(tmp_path: Path) -> None:
    # Checked before any Vault call: nothing listens at this address.
    settings = make_settings("http://127.0.0.1:9", "unused", tmp_path, jwks_max_age=300,
                             vault={"propagation_delay": 60})
    app = App(settings)
    with pytest.raises(ValueError, match=r"vault.propagation_delay \(60s\) must be at least"):
        asyncio.run(app.start())
