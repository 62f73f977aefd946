"""`tokend serve | dev | migrate | keys … | token …`"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.metadata
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import structlog
from pydantic import ValidationError

from tokend import event_loop
from tokend.app import serve_forever
from tokend.cli_dev import (
    PortTaken,
    announce_when_ready,
    banner,
    check_ports,
    dev_ports,
    progress,
    write_state,
)
from tokend.cli_token import DEV_STATE, EXIT_USAGE, UsageError, add_token_commands
from tokend.config import Settings, load_settings
from tokend.logs import configure_logging
from tokend.vault.client import VaultError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UsageError as exc:
        print(f"tokend: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PortTaken as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except (ValidationError, VaultError, ValueError, OSError) as exc:
        print(f"tokend: {_explain(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a dev OpenBao that failed, a port gRPC could not bind
        print(f"tokend: {_explain(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line naming the command and the fix, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: …)` after every flag that has a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, [], "", argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        lines = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        return "invalid configuration:\n  " + "\n  ".join(lines)
    return str(exc)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tokend", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the service (production mode)",
                                formatter_class=_Formatter)
    serve.add_argument("--config", type=Path, help="YAML settings file "
                       "(docs/configuration.md); TOKEND_* variables override it")
    _add_workers_option(serve)
    serve.set_defaults(run=_serve)

    dev = commands.add_parser("dev", help="run a local OpenBao and tokend with dev defaults",
                              formatter_class=_Formatter)
    dev.add_argument("--config", type=Path, help="YAML settings file layered under the "
                     "dev defaults")
    dev.add_argument("--data-dir", type=Path, default=Path(".tokend-data"),
                     help="keys, revocations and the OpenBao data; survives restarts")
    dev.add_argument("--grpc-listen", default="127.0.0.1:50051", metavar="HOST:PORT",
                     help="tokend's gRPC address (plaintext, loopback only)")
    dev.add_argument("--http-listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="JWKS, discovery, health and metrics")
    dev.add_argument("--vault-port", type=_port, default=8200, metavar="PORT",
                     help="OpenBao API port on 127.0.0.1; its cluster port is the next one")
    _add_workers_option(dev)
    dev.set_defaults(run=_dev)

    migrate = commands.add_parser("migrate", help="create or upgrade the store schema, then "
                                  "exit", formatter_class=_Formatter)
    migrate.add_argument("--store-url", help="default: $TOKEND_STORE_URL, else store_url from "
                         "the settings; prefer the variable, a password in argv is visible to ps")
    migrate.add_argument("--config", type=Path, help="YAML settings file")
    migrate.set_defaults(run=_migrate)

    _add_keys_commands(commands)
    add_token_commands(commands, _Formatter)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("tokend")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65534:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65534")
    return int(text)


def _add_workers_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                         help="server processes sharing the ports (SO_REUSEPORT), default 1; "
                         "the parent supervises them (docs/operations.md)")


def _positive_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    return _run(settings, args.workers)


def _dev(args: argparse.Namespace) -> int:
    from tokend.vault.dev import DevVault

    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    vault = DevVault(data_dir / "openbao", port=args.vault_port, cluster_port=args.vault_port + 1)
    leftover = vault.end_leftover()  # before the port check: it holds the OpenBao ports
    if leftover is not None:
        progress(f"stopped the OpenBao a killed tokend dev left running (pid {leftover}); "
                 f"starting it afresh on the same data")
    check_ports(dev_ports(args.grpc_listen, args.http_listen, args.vault_port))
    progress(f"ports free: gRPC {args.grpc_listen}, HTTP {args.http_listen}, OpenBao "
             f"127.0.0.1:{args.vault_port} and :{args.vault_port + 1}")
    progress(f"OpenBao: starting (data and bao.log in {vault.data_dir})")
    started = time.monotonic()
    addr, token = vault.start()
    progress(f"OpenBao: ready at {addr} in {time.monotonic() - started:.1f} s; tokend: starting")
    state = write_state(data_dir, grpc_listen=args.grpc_listen, http_listen=args.http_listen,
                        vault_addr=addr)
    try:
        settings = load_settings(
            args.config,
            insecure_plaintext=True,
            grpc_listen=args.grpc_listen,
            http_listen=args.http_listen,
            store_url=f"sqlite:///{data_dir / 'tokend.db'}",
            vault={"addr": addr, "token": token, "create_key": True, "namespace": None,
                   "cacert": None},
            tokens={"issuer": f"http://{args.http_listen}"},
        )
        announce_when_ready(args.http_listen, banner(
            grpc_listen=args.grpc_listen, http_listen=args.http_listen, vault_addr=addr,
            data_dir=data_dir))
        return _run(settings, args.workers)
    finally:
        state.unlink(missing_ok=True)
        vault.stop()


def _migrate(args: argparse.Namespace) -> int:
    """Apply the store's migrations (SQLite or PostgreSQL) and exit: 0 done, 1 failed."""
    from tokend.store import StoreError, open_store

    # The variable first: full settings would also demand TLS and Vault for no reason here.
    url = args.store_url or os.environ.get("TOKEND_STORE_URL") or load_settings(
        args.config).store_url
    store = open_store(url, migrate=True)

    async def migrate() -> None:
        await store.open()  # migrates, see open_store
        await store.close()

    try:
        asyncio.run(migrate())
    except StoreError as exc:
        print(f"tokend: migration failed: {exc}", file=sys.stderr)
        return 1
    print("tokend: the store schema is up to date")
    return 0


def _run(settings: Settings, workers: int = 1) -> int:
    configure_logging(settings.log_level)
    if workers > 1:
        from tokend.workers import supervise

        return supervise(settings, workers)
    try:
        event_loop.run(serve_forever(settings), settings.event_loop)
    except (OSError, RuntimeError) as exc:
        raise _bind_failure(settings, exc) or exc from None
    return 0


def _bind_failure(settings: Settings, exc: Exception) -> RuntimeError | None:
    """Name the setting whose address could not be bound; gRPC and aiohttp name neither."""
    text = str(exc)
    if not (text.startswith("Failed to bind") or getattr(exc, "errno", None) == errno.EADDRINUSE):
        return None
    listens = {"grpc_listen": settings.grpc_listen, "http_listen": settings.http_listen,
               "http.metrics_listen": settings.http.metrics_listen}
    for name, listen in listens.items():
        port = listen.rpartition(":")[2] if listen else None
        if port and (f"{listen}" in text or f", {port})" in text):
            flag = {"grpc_listen": " (tokend dev: --grpc-listen)",
                    "http_listen": " (tokend dev: --http-listen)"}.get(name, "")
            return RuntimeError(f"cannot listen on {listen} ({name}): the port is taken or "
                                f"the address is not this machine's; change {name}{flag}")
    return None


# -- key lifecycle: operators act on the custody in Vault directly ---------------------


def _add_keys_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="list, rotate or create the signing key in Vault",
                               formatter_class=_Formatter)
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every key version, its phase and its dates",
                                 formatter_class=_Formatter)
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    listing.set_defaults(run=_keys_list)
    rotate = actions.add_parser("rotate", help="create a new key version (published now, "
                                "signing after vault.propagation_delay)",
                                formatter_class=_Formatter)
    rotate.set_defaults(run=_keys_rotate)
    init = actions.add_parser("init", help="create the key (its first version signs at once)",
                              formatter_class=_Formatter)
    init.add_argument("--custody", choices=("transit", "kv"),
                      help="default: vault.custody from the settings")
    init.set_defaults(run=_keys_init)
    for action in (listing, rotate, init):
        action.add_argument("--config", type=Path, help="YAML settings file (the service's); "
                            "without it and without VAULT_ADDR, the running `tokend dev` "
                            "of ./.tokend-data")


def _keys_settings(args: argparse.Namespace) -> Settings:
    # These commands serve nothing, so the serving checks (TLS or loopback plaintext) are
    # lifted; every other setting, the key's name and the rotation timing included, is
    # the service's own.
    _quiet_logging()
    return load_settings(args.config, insecure_plaintext=True, grpc_listen="127.0.0.1:0",
                         **_dev_vault(args))


def _dev_vault(args: argparse.Namespace) -> dict[str, Any]:
    """The dev stack's OpenBao when nothing else names a Vault: no exports needed in the
    directory where `tokend dev` runs."""
    if args.config is not None or os.environ.get("VAULT_ADDR") or os.environ.get(
            "TOKEND_VAULT__ADDR"):
        return {}
    try:
        addr = json.loads(DEV_STATE.read_text())["vault_addr"]
        token = (DEV_STATE.parent / "openbao" / "root-token").read_text().strip()
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {"vault": {"addr": addr, "token": token, "namespace": None, "cacert": None}}


def _quiet_logging() -> None:
    """Warnings and errors only, on stderr: stdout carries the answer alone.

    The stream is looked up at every message and loggers are not cached, so the next
    configuration (a test's, in-process) fully replaces this one.
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _keys_list(args: argparse.Namespace) -> int:
    from tokend.keys import admin

    keyring = admin.open_keyring(_keys_settings(args))
    keyring.load()
    rows = admin.version_rows(keyring)
    print(json.dumps(rows, indent=2) if args.json else admin.table(rows))
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from tokend.keys import admin

    keyring = admin.open_keyring(_keys_settings(args))
    keyring.load()
    print(admin.describe_rotation(keyring, keyring.rotate()))
    return 0


def _keys_init(args: argparse.Namespace) -> int:
    from tokend.keys import admin

    settings = _keys_settings(args)
    keyring = admin.open_keyring(settings, custody=args.custody)
    print(admin.describe_init(keyring, keyring.init(), settings.vault.custody))
    return 0


if __name__ == "__main__":
    sys.exit(main())
