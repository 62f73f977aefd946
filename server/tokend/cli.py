"""`tokend serve | dev | migrate | keys … | token …`"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import grpc
import structlog
from google.protobuf import duration_pb2, json_format, struct_pb2
from pydantic import ValidationError

from tokend.app import serve_forever
from tokend.config import Settings, load_settings
from tokend.logs import configure_logging
from tokend.vault.client import VaultError
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValidationError, VaultError, ValueError, OSError) as exc:
        print(f"tokend: {_explain(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        lines = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        return "invalid configuration:\n  " + "\n  ".join(lines)
    return str(exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokend", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (production mode)")
    serve.add_argument("--config", type=Path, help="YAML settings file")
    _add_workers_option(serve)
    serve.set_defaults(run=_serve)

    dev = commands.add_parser("dev", help="run a local OpenBao and tokend with dev defaults")
    dev.add_argument("--config", type=Path, help="YAML settings file")
    dev.add_argument("--data-dir", type=Path, default=Path(".tokend-data"))
    dev.add_argument("--grpc-listen", default="127.0.0.1:50051")
    dev.add_argument("--http-listen", default="127.0.0.1:8080")
    dev.add_argument("--vault-port", type=int, default=8200,
                     help="OpenBao API port; the cluster port is the next one")
    _add_workers_option(dev)
    dev.set_defaults(run=_dev)

    migrate = commands.add_parser("migrate", help="create or upgrade the store schema, then exit")
    migrate.add_argument("--store-url", help="default: $TOKEND_STORE_URL, else store_url from "
                         "the settings; prefer the variable, a password in argv is visible to ps")
    migrate.add_argument("--config", type=Path, help="YAML settings file")
    migrate.set_defaults(run=_migrate)

    _add_keys_commands(commands)
    _add_token_commands(commands)
    return parser


def _add_workers_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                         help="server processes sharing the ports (SO_REUSEPORT), default 1; "
                         "the parent supervises them (docs/operations.md)")


def _positive_int(text: str) -> int:
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
    addr, token = vault.start()
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
        return _run(settings, args.workers)
    finally:
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
    asyncio.run(serve_forever(settings))
    return 0


# -- key lifecycle: operators act on the custody in Vault directly ---------------------


def _add_keys_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="list, rotate or create the signing key in Vault")
    actions = keys.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every key version, its phase and its dates")
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    listing.set_defaults(run=_keys_list)
    rotate = actions.add_parser("rotate", help="create a new key version (published now, "
                                "signing after vault.propagation_delay)")
    rotate.set_defaults(run=_keys_rotate)
    init = actions.add_parser("init", help="create the key (its first version signs at once)")
    init.add_argument("--custody", choices=("transit", "kv"),
                      help="default: vault.custody from the settings")
    init.set_defaults(run=_keys_init)
    for action in (listing, rotate, init):
        action.add_argument("--config", type=Path, help="YAML settings file (the service's)")


def _keys_settings(args: argparse.Namespace) -> Settings:
    # These commands serve nothing, so the serving checks (TLS or loopback plaintext) are
    # lifted; every other setting, the key's name and the rotation timing included, is
    # the service's own.
    _quiet_logging()
    return load_settings(args.config, insecure_plaintext=True, grpc_listen="127.0.0.1:0")


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


# -- client commands, for the tour and for operators -----------------------------------


def _add_token_commands(commands: Any) -> None:
    token = commands.add_parser("token", help="call a running tokend (plaintext, loopback)")
    token.add_argument("--addr", default="127.0.0.1:50051")
    actions = token.add_subparsers(dest="action", required=True)

    issue = actions.add_parser("issue", help="issue an access token")
    issue.add_argument("--sub", required=True)
    issue.add_argument("--aud", action="append", required=True)
    issue.add_argument("--scope", action="append", default=[])
    issue.add_argument("--ttl", type=int, help="seconds")
    issue.add_argument("--claims", default="{}", help="custom claims as a JSON object")
    issue.add_argument("--refresh", action="store_true", help="also return a refresh token")
    issue.set_defaults(run=_token_issue)

    verify = actions.add_parser("verify", help="verify an access token")
    verify.add_argument("token")
    verify.add_argument("--aud", required=True)
    verify.add_argument("--scope", action="append", default=[])
    verify.set_defaults(run=_token_verify)

    refresh = actions.add_parser("refresh", help="spend a refresh token for a new pair")
    refresh.add_argument("refresh_token")
    refresh.set_defaults(run=_token_refresh)

    revoke = actions.add_parser("revoke", help="revoke a token, jti, refresh token or subject")
    target = revoke.add_mutually_exclusive_group(required=True)
    for name in ("token", "jti", "refresh-token", "subject"):
        target.add_argument(f"--{name}")
    revoke.add_argument("--reason", default="")
    revoke.set_defaults(run=_token_revoke)


def _call(args: argparse.Namespace, method: str, request: Any) -> int:
    with grpc.insecure_channel(args.addr) as channel:
        stub = tokend_pb2_grpc.TokenServiceStub(channel)
        try:
            response = getattr(stub, method)(request, timeout=10)
        except grpc.RpcError as exc:
            print(f"tokend: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(response, preserving_proto_field_name=True))
    return 0


def _token_issue(args: argparse.Namespace) -> int:
    claims = struct_pb2.Struct()
    claims.update(json.loads(args.claims))
    request = pb.IssueRequest(subject=args.sub, audience=args.aud, scopes=args.scope,
                              claims=claims, include_refresh_token=args.refresh)
    if args.ttl:
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=args.ttl))
    return _call(args, "Issue", request)


def _token_verify(args: argparse.Namespace) -> int:
    request = pb.VerifyRequest(token=args.token, audience=args.aud, required_scopes=args.scope)
    return _call(args, "Verify", request)


def _token_refresh(args: argparse.Namespace) -> int:
    return _call(args, "Refresh", pb.RefreshRequest(refresh_token=args.refresh_token))


def _token_revoke(args: argparse.Namespace) -> int:
    fields = {"token": args.token, "jti": args.jti, "refresh_token": args.refresh_token,
              "subject": args.subject}
    target = {k: v for k, v in fields.items() if v is not None}
    return _call(args, "Revoke", pb.RevokeRequest(reason=args.reason, **target))


if __name__ == "__main__":
    sys.exit(main())
