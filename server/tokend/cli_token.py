"""`tokend token issue | verify | refresh | revoke`: call a running tokend from a shell.

Exit codes are part of the interface (docs/cli.md), so scripts can branch on the verdict:
0 done / valid, 1 invalid (the token or refresh token), 2 usage (a bad flag or a request
the server refused as INVALID_ARGUMENT), 3 unavailable (cannot reach tokend, or it asks
to retry later), 4 denied (the caller's identity is not allowed), 5 any other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from tokend_client import error_from_rpc
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_DENIED, EXIT_FAILED = range(6)
DEFAULT_ADDR = "127.0.0.1:50051"
DEV_STATE = Path(".tokend-data") / "dev.json"  # written by `tokend dev` while it runs
MAX_TTL_SECONDS = 10 * 365 * 86400  # far above any server maximum; the server's limit rules

_EXIT_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
}


class UsageError(Exception):
    """A bad flag value: one line on stderr and exit 2."""


# -- argument parsing ----------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """Options accepted both before and after the action (`token --addr X issue` or
    `token issue --addr X`); SUPPRESS keeps one place from overwriting the other."""
    group = parser.add_argument_group("connection (flag, else the variable, else default)")
    group.add_argument("--addr", default=argparse.SUPPRESS, metavar="HOST:PORT",
                       help=f"tokend's gRPC address; $TOKEND_ADDR, else the running "
                       f"`tokend dev` of ./.tokend-data, else {DEFAULT_ADDR}")
    group.add_argument("--ca", default=argparse.SUPPRESS, type=Path, metavar="FILE",
                       help="CA bundle that signed tokend's certificate (PEM); turns TLS on; "
                       "$TOKEND_CA_FILE")
    group.add_argument("--cert", default=argparse.SUPPRESS, type=Path, metavar="FILE",
                       help="this caller's client certificate (PEM) for mutual TLS; "
                       "$TOKEND_CLIENT_CERT")
    group.add_argument("--key", default=argparse.SUPPRESS, type=Path, metavar="FILE",
                       help="the client certificate's private key (PEM); $TOKEND_CLIENT_KEY")
    group.add_argument("--server-name", default=argparse.SUPPRESS, metavar="NAME",
                       help="name to expect in tokend's certificate when it differs from "
                       "the address (say, through a port-forward); $TOKEND_SERVER_NAME")
    group.add_argument("--timeout", default=argparse.SUPPRESS, type=_seconds, metavar="SECONDS",
                       help="deadline of the call (default 10)")
    group.add_argument("--output", "-o", default=argparse.SUPPRESS,
                       choices=("text", "json", "token", "env"),
                       help="text: `name: value` lines (default); json: the response as "
                       "JSON; token: the bare token alone, for $(...); env: "
                       "ACCESS_TOKEN=... REFRESH_TOKEN=... for eval")


def add_token_commands(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    token = commands.add_parser(
        "token", help="call a running tokend: issue, verify, refresh, revoke",
        description="Call a running tokend. Exit codes: 0 done/valid, 1 invalid, 2 usage, "
        "3 unavailable, 4 denied, 5 other failure (docs/cli.md).", formatter_class=formatter)
    _connection_options(token)
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, run: Callable[[argparse.Namespace], int]
               ) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=formatter)
        _connection_options(parser)
        parser.set_defaults(run=run)
        return parser

    issue = action("issue", "issue an access token (and with --refresh a refresh token)",
                   _token_issue)
    issue.add_argument("--sub", required=True, help="the subject (`sub` claim); required")
    issue.add_argument("--aud", action="append", required=True,
                       help="an audience (`aud`); repeat for several; required")
    issue.add_argument("--scope", action="append", default=[],
                       help="a scope; repeat for several")
    issue.add_argument("--ttl", type=_ttl, metavar="DURATION",
                       help="lifetime: seconds, or a number with s, m or h (900, 15m); "
                       "default: the server's tokens.default_ttl")
    issue.add_argument("--claims", type=_claims, metavar="JSON",
                       help="custom claims as a JSON object, e.g. '{\"tenant\": \"acme\"}'")
    issue.add_argument("--refresh", action="store_true",
                       help="also return a refresh token")

    verify = action("verify", "verify an access token; exit 0 valid, 1 invalid",
                    _token_verify)
    verify.add_argument("token", help="the access token (JWT)")
    verify.add_argument("--aud", required=True, help="the audience to expect; required")
    verify.add_argument("--scope", action="append", default=[],
                        help="a scope the token must hold; repeat for several")

    refresh = action("refresh", "spend a refresh token for a new pair; exit 1 if it is "
                     "unknown, expired, revoked or spent", _token_refresh)
    refresh.add_argument("refresh_token", help="the refresh token")
    refresh.add_argument("--scope", action="append", default=[],
                         help="narrow the new pair to this scope; repeat for several "
                         "(default: the same scopes)")

    revoke = action("revoke", "revoke a token, a jti, a refresh token's family or a subject",
                    _token_revoke)
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--token", help="an access token")
    target.add_argument("--jti", help="an access token's `jti`")
    target.add_argument("--refresh-token", help="a refresh token: revokes its whole family")
    target.add_argument("--subject", help="every token issued to this subject up to now")
    revoke.add_argument("--reason", default="", help="recorded in the audit log")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


_DURATION = re.compile(r"(\d{1,9})([smh]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def _ttl(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give seconds or a number with s, m or h (900, 15m)")
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    # 0 must not fall back to the default silently: a caller asking for 0 has a bug.
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise argparse.ArgumentTypeError("must be at least 1 second (leave --ttl out for "
                                         "the server's default)")
    return seconds


def _claims(text: str) -> struct_pb2.Struct:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object such as '{{\"tenant\": \"acme\"}}', not {type(value).__name__}")
    claims = struct_pb2.Struct()
    try:
        claims.update(value)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot be sent: {exc}") from None
    return claims


# -- connection ----------------------------------------------------------------------


def _option(args: argparse.Namespace, name: str, variable: str) -> Any:
    value = getattr(args, name, None)
    if value is None:
        value = os.environ.get(variable) or None
        if value is not None and name in ("ca", "cert", "key"):
            value = Path(value)
    return value


def resolve_addr(args: argparse.Namespace) -> str:
    if getattr(args, "addr", None) == "":
        raise UsageError("--addr is empty; give HOST:PORT, e.g. 127.0.0.1:50051")
    addr = _option(args, "addr", "TOKEND_ADDR")
    if addr:
        return str(addr)
    try:
        return str(json.loads(DEV_STATE.read_text())["grpc_listen"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_ADDR


def _channel(args: argparse.Namespace, addr: str) -> grpc.Channel:
    ca, cert, key = (_option(args, n, v) for n, v in (
        ("ca", "TOKEND_CA_FILE"), ("cert", "TOKEND_CLIENT_CERT"), ("key", "TOKEND_CLIENT_KEY")))
    if (cert is None) != (key is None):
        raise UsageError("mutual TLS needs both --cert and --key (or TOKEND_CLIENT_CERT and "
                         "TOKEND_CLIENT_KEY)")
    if ca is None and cert is None:
        return grpc.insecure_channel(addr)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "--ca") if ca else None,
        private_key=_read(key, "--key") if key else None,
        certificate_chain=_read(cert, "--cert") if cert else None,
    )
    name = _option(args, "server_name", "TOKEND_SERVER_NAME")
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(addr, credentials, options=options)


def _read(path: Path, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise UsageError(f"{flag} {path}: not a PEM file")
    return data


def _call(args: argparse.Namespace, method: str, request: Message) -> Message | int:
    """The response, or the exit code after a one-line error on stderr."""
    addr = resolve_addr(args)
    with _channel(args, addr) as channel:
        stub = tokend_pb2_grpc.TokenServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=getattr(args, "timeout", 10.0))
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            details = " ".join(str(exc.details() or "").split())
            reason = error_from_rpc(exc).reason  # docs/errors.md; "" if tokend did not answer
            if code is grpc.StatusCode.UNAVAILABLE and not reason:
                details = f"cannot reach tokend at {addr} ({details[:300]})"
            shown = f"{code.name} ({reason})" if reason else code.name
            print(f"tokend: {method} failed: {shown}: {details}", file=sys.stderr)
            if code is grpc.StatusCode.UNAUTHENTICATED and method == "Refresh":
                return EXIT_INVALID  # the refresh token is the thing judged here
            return _EXIT_BY_CODE.get(code, EXIT_FAILED)


# -- output --------------------------------------------------------------------------


def _output(args: argparse.Namespace) -> str:
    return str(getattr(args, "output", "text"))


def _as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=True)


def _print_text(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if value in ("", None, {}, []):
            continue
        text = json.dumps(value, separators=(", ", ": ")) if isinstance(value, dict | list) \
            else str(value).lower() if isinstance(value, bool) else str(value)
        print(f"{name}: {text}")


def _print_pair(args: argparse.Namespace, response: pb.IssueResponse) -> int:
    mode = _output(args)
    if mode == "json":
        print(json.dumps(_as_dict(response), indent=2))
    elif mode == "token":
        print(response.access_token)
    elif mode == "env":
        print(f"ACCESS_TOKEN={shlex.quote(response.access_token)}")
        if response.refresh_token:
            print(f"REFRESH_TOKEN={shlex.quote(response.refresh_token)}")
    else:
        _print_text(_as_dict(response))
    return EXIT_OK


def _refuse_output(args: argparse.Namespace, allowed: tuple[str, ...]) -> None:
    if _output(args) not in allowed:
        raise UsageError(f"--output {_output(args)} does not apply here; use one of "
                         f"{', '.join(allowed)}")


# -- actions -------------------------------------------------------------------------


def _token_issue(args: argparse.Namespace) -> int:
    request = pb.IssueRequest(subject=args.sub, audience=args.aud, scopes=args.scope,
                              claims=args.claims or struct_pb2.Struct(),
                              include_refresh_token=args.refresh)
    if args.ttl is not None:
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=args.ttl))
    response = _call(args, "Issue", request)
    return response if isinstance(response, int) else _print_pair(args, response)


def _token_refresh(args: argparse.Namespace) -> int:
    request = pb.RefreshRequest(refresh_token=args.refresh_token, scopes=args.scope)
    response = _call(args, "Refresh", request)
    return response if isinstance(response, int) else _print_pair(args, response)


def _token_verify(args: argparse.Namespace) -> int:
    _refuse_output(args, ("text", "json"))
    request = pb.VerifyRequest(token=args.token, audience=args.aud, required_scopes=args.scope)
    response = _call(args, "Verify", request)
    if isinstance(response, int):
        return response
    assert isinstance(response, pb.VerifyResponse)
    fields = {"valid": response.valid, **_as_dict(response)}  # the verdict first
    if response.valid:
        fields.pop("reason", None)
    if _output(args) == "json":
        print(json.dumps(fields, indent=2))
    else:
        _print_text(fields)
    return EXIT_OK if response.valid else EXIT_INVALID


def _token_revoke(args: argparse.Namespace) -> int:
    _refuse_output(args, ("text", "json"))
    fields = {"token": args.token, "jti": args.jti, "refresh_token": args.refresh_token,
              "subject": args.subject}
    target = {k: v for k, v in fields.items() if v is not None}
    response = _call(args, "Revoke", pb.RevokeRequest(reason=args.reason, **target))
    if isinstance(response, int):
        return response
    if _output(args) == "json":
        print(json.dumps(_as_dict(response), indent=2))
    else:
        _print_text(_as_dict(response))
    return EXIT_OK
