"""An OpenBao whose listener speaks only TLS and demands a client certificate.

`bao server -dev` cannot require client certificates, so this runs a real server from a
config file (in-memory storage), initialises and unseals it with one key share. The
port, stopping by PID and clean-up are BaoDevServer's.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import hvac

from tests.support.bao import BaoDevServer
from tests.support.pki import TestCA


class TlsBao(BaoDevServer):
    """`with TlsBao() as bao:` gives `addr` (https), `ca`, `client_cert` and root `token`."""

    def __init__(self, *, ready_timeout: float = 20.0) -> None:
        super().__init__(ready_timeout=ready_timeout)
        self.directory = Path(self._tmp.name)
        self.addr = f"https://127.0.0.1:{self.port}"
        self.ca = TestCA(self.directory / "pki", name="vault test CA")
        self._server_cert = self.ca.server("openbao")
        self.client_cert = self.ca.client("tokend-vault-client")
        self.token = ""  # the root token, known once initialised

    def client(self, token: str | None = None) -> hvac.Client:
        """A client that trusts the test CA and presents the client certificate."""
        cert = self.client_cert
        return hvac.Client(url=self.addr, token=token or self.token or None,
                           verify=str(self.ca.cert_file),
                           cert=(str(cert.cert_file), str(cert.key_file)), timeout=5)

    def start(self) -> TlsBao:
        config = self.directory / "bao.hcl"
        config.write_text(self._config())
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen([self._binary, "server", f"-config={config}"],
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)
        try:
            self._initialise()
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self) -> str:
        cert = self._server_cert
        return f"""\
storage "inmem" {{}}
listener "tcp" {{
  address                            = "127.0.0.1:{self.port}"
  cluster_address                    = "127.0.0.1:{self.port + 1}"
  tls_cert_file                      = "{cert.cert_file}"
  tls_key_file                       = "{cert.key_file}"
  tls_client_ca_file                 = "{self.ca.cert_file}"
  tls_require_and_verify_client_cert = true
}}
disable_mlock = true
api_addr      = "{self.addr}"
cluster_addr  = "https://127.0.0.1:{self.port + 1}"
"""

    def _initialise(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        client = self.client()
        self._retry(deadline, lambda: client.sys.read_health_status(method="GET"))
        answer = client.sys.initialize(secret_shares=1, secret_threshold=1)
        client.sys.submit_unseal_key(answer["keys"][0])
        self.token = answer["root_token"]
        client = self.client()
        # Usable once the unsealed server has become active.
        self._retry(deadline, lambda: client.sys.enable_secrets_engine("transit", path="transit"))

    def _retry(self, deadline: float, call: Callable[[], object]) -> None:
        """Run `call` until it succeeds; give up at `deadline` or when bao has exited."""
        while True:
            try:
                call()
                return
            except Exception as exc:  # not listening, or not active yet
                if self._proc is None or self._proc.poll() is not None:
                    raise RuntimeError(f"bao exited; log:\n{self.log_tail()}") from exc
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
