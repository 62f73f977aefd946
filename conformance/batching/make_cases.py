#!/usr/bin/env python3
"""Make conformance/batching/cases.json: the batching rules every client shares.

The rules (docs/clients.md "Verify calls are batched"): a VerifyMany carries at most
``max_batch`` requests and at most MAX_BATCH_BYTES of them, counted as the encoded size of
the VerifyManyRequest that carries them (the sum, over its requests, of field 1's tag,
the length varint and the encoded VerifyRequest); a request that alone exceeds the cap is
sent alone. A VerifyMany item's ``InvalidRequest`` becomes the error a unary Verify
refusing the same request raises.

The expectations are made here, not by any client: chunk boundaries by the small
reference split below (sizes from the protobuf library), each designed case asserted to
hit the boundary it names; an invalid case's item and its expected error by tokend's own
request checks and error answer (server/tokend/api), i.e. what a real tokend sends.

    .venv/bin/python conformance/batching/make_cases.py          # rewrite cases.json
    .venv/bin/python conformance/batching/make_cases.py --check  # exit 1 if it differs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.rpc import error_details_pb2, status_pb2
from grpc import StatusCode

from tokend.api import errors, requests
from tokend.config import TokenConfig
from tokend.tokens.errors import BadRequest
from tokend_client.v1 import tokend_pb2 as pb

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases.json"
ERRORS_CASES = HERE.parent / "errors" / "cases.json"

MAX_BATCH_BYTES = 60 * 1024  # every client's cap (docs/clients.md)
MAX_VERIFY_MANY = 256  # the server's limit per VerifyMany; the explicit many-call's cap
SMALL = {"token_length": 300, "audience": "orders", "required_scopes": []}
LARGE_TOKEN = 8000  # just under tokens.max_token_bytes' default (8 KiB)
OVERSIZE_TOKEN = 70_000  # larger than the cap on its own

Spec = dict[str, Any]


def request_of(spec: Spec) -> pb.VerifyRequest:
    """The VerifyRequest a case's request stands for (README: the token is 'x' repeated)."""
    return pb.VerifyRequest(token="x" * spec["token_length"], audience=spec["audience"],
                            required_scopes=spec["required_scopes"])


def spec(token_length: int, audience: str = "orders", scopes: list[str] | None = None) -> Spec:
    return {"token_length": token_length, "audience": audience, "required_scopes": scopes or []}


def batch_bytes(specs: list[Spec]) -> int:
    """What counts against the cap: the encoded VerifyManyRequest carrying ``specs``."""
    return pb.VerifyManyRequest(requests=[request_of(s) for s in specs]).ByteSize()


def reference_split(specs: list[Spec], max_batch: int) -> list[list[int]]:
    """The rule, written once here: fill a chunk in order while it stays within max_batch
    requests and MAX_BATCH_BYTES; a request that does not fit starts the next chunk (and a
    chunk always takes its first request, however large)."""
    chunks: list[list[int]] = []
    for index in range(len(specs)):
        if chunks:
            grown = [specs[i] for i in chunks[-1]] + [specs[index]]
            if len(grown) <= max_batch and batch_bytes(grown) <= MAX_BATCH_BYTES:
                chunks[-1].append(index)
                continue
        chunks.append([index])
    return chunks


def tuned(before: list[Spec], total: int, audience: str = "orders",
          scopes: list[str] | None = None) -> Spec:
    """A request that brings the batch ``before`` + it to exactly ``total`` bytes."""
    # Each token byte adds one byte or, across a varint width, a few more: start just below.
    first = max(1, total - batch_bytes([*before, spec(0, audience, scopes)]) - 16)
    for length in range(first, MAX_BATCH_BYTES):
        candidate = spec(length, audience, scopes)
        size = batch_bytes([*before, candidate])
        if size == total:
            return candidate
        if size > total:
            break
    raise AssertionError(f"no token length makes a batch of exactly {total} bytes")


def split_case(case_id: str, about: str, specs: list[Spec], max_batch: int,
               check: Callable[[list[list[int]]], bool]) -> dict[str, Any]:
    """A split case; ``check`` asserts that it hits the boundary it is about."""
    chunks = reference_split(specs, max_batch)
    assert check(chunks), f"{case_id}: the chunks {chunks} miss the point of the case"
    sizes = [batch_bytes([specs[i] for i in chunk]) for chunk in chunks]
    for chunk, size in zip(chunks, sizes, strict=True):
        assert len(chunk) <= max_batch and (len(chunk) == 1 or size <= MAX_BATCH_BYTES)
    return {"id": case_id, "about": about, "max_batch": max_batch, "requests": specs,
            "expect": {"chunks": chunks, "chunk_bytes": sizes}}


def runs(*lengths: int) -> list[list[int]]:
    """Consecutive index runs of the given lengths: runs(2, 1) == [[0, 1], [2]]."""
    out, start = [], 0
    for length in lengths:
        out.append(list(range(start, start + length)))
        start += length
    return out


def split_cases() -> list[dict[str, Any]]:
    large = spec(LARGE_TOKEN, "orders", ["orders:read"])
    over = spec(OVERSIZE_TOKEN)
    at_cap = tuned([large] * 7, MAX_BATCH_BYTES)
    one_over = {**at_cap, "token_length": at_cap["token_length"] + 1}
    assert batch_bytes([large] * 7 + [one_over]) == MAX_BATCH_BYTES + 1
    # Lengths on either side of the varint widths (127/128, 16383/16384), no audience
    # (an empty string is not encoded), several scopes: only an exact encoder gets these.
    mixed = [spec(16377, ""), spec(124, "a"), spec(16000, "orders", ["s" * 200, "t"]),
             spec(125, "", ["read"]), spec(12000, "billing", ["a", "b", "c"])]
    mixed_at_cap = tuned(mixed, MAX_BATCH_BYTES, "", ["x" * 130])
    mixed_over = {**mixed_at_cap, "token_length": mixed_at_cap["token_length"] + 1}
    alone_at_cap = tuned([], MAX_BATCH_BYTES)
    small = dict(SMALL)
    return [
        split_case("empty", "no requests, no chunk", [], 64, lambda c: c == []),
        split_case("count-64-at-64", "64 small requests fill one batch of max_batch 64",
                   [small] * 64, 64, lambda c: c == runs(64)),
        split_case("count-65-at-64", "the 65th small request starts a second batch",
                   [small] * 65, 64, lambda c: c == runs(64, 1)),
        split_case("count-129-at-64", "129 small requests: 64, 64, 1",
                   [small] * 129, 64, lambda c: c == runs(64, 64, 1)),
        split_case("count-257-at-256", "the explicit many-call's own cap (256, the "
                   "server's limit): 257 small requests are 256 and 1",
                   [spec(100)] * 257, MAX_VERIFY_MANY, lambda c: c == runs(256, 1)),
        split_case("max-batch-1", "max_batch 1: every request alone",
                   [small] * 3, 1, lambda c: c == runs(1, 1, 1)),
        split_case("bytes-before-count", "8000-byte tokens: the byte cap ends each batch "
                   "at 7 requests, long before max_batch 64",
                   [large] * 20, 64, lambda c: c == runs(7, 7, 6)),
        split_case("oversize-alone-between-small", "a request larger than the cap goes "
                   "alone; the small ones around it batch as usual",
                   [small, small, over, small, small], 64, lambda c: c == runs(2, 1, 2)),
        split_case("oversize-first-twice", "two oversize requests in a row, first in the "
                   "list: each alone", [over, spec(OVERSIZE_TOKEN + 1), small, small], 64,
                   lambda c: c == runs(1, 1, 2)),
        split_case("exactly-at-cap", "7 large requests and one tuned so the batch is "
                   "exactly 61440 bytes: it fits; the next request starts a new batch",
                   [large] * 7 + [at_cap, small], 64, lambda c: c == runs(8, 1)),
        split_case("one-byte-over-cap", "as exactly-at-cap with the tuned token one byte "
                   "longer: 61441 bytes does not fit", [large] * 7 + [one_over, small], 64,
                   lambda c: c == runs(7, 2)),
        split_case("exactly-at-cap-varint-widths", "mixed sizes across the varint widths, "
                   "an empty audience, several scopes; exactly 61440 bytes",
                   [*mixed, mixed_at_cap, small], 64, lambda c: c == runs(6, 1)),
        split_case("one-byte-over-cap-varint-widths", "as the previous case, one byte over",
                   [*mixed, mixed_over, small], 64, lambda c: c == runs(5, 2)),
        split_case("one-request-of-exactly-the-cap", "a request of exactly 61440 bytes is "
                   "not oversize, but nothing fits beside it",
                   [small, alone_at_cap, small], 64, lambda c: c == runs(1, 1, 1)),
    ]


# Real requests tokend's Verify refuses, with the case of conformance/errors/cases.json
# that refuses the same way (if any).
REFUSED: list[tuple[str, str | None, dict[str, Any]]] = [
    ("without-audience", "verify_without_audience", {"token": "a.b.c"}),
    ("without-token", "verify_without_token", {"audience": "orders"}),
    ("required-scope-with-a-space", "verify_required_scope_with_a_space",
     {"token": "a.b.c", "audience": "orders", "required_scopes": ["orders read"]}),
    ("presenter-thumbprint-malformed", "verify_presenter_thumbprint_malformed",
     {"token": "a.b.c", "audience": "orders", "presenter_x5t_s256": "not-a-thumbprint"}),
    ("unknown-delegation", "verify_unknown_delegation",
     {"token": "a.b.c", "audience": "orders", "delegation": 7}),
    ("audience-with-a-control-character", None,
     {"token": "a.b.c", "audience": "orders\u0000"}),
]


def server_refusal(exc: BadRequest) -> tuple[dict[str, str], dict[str, Any]]:
    """(the VerifyMany item tokend sends, the error of tokend's unary Verify) for ``exc``."""
    field, description, reason = errors.field_violation(exc)
    status = errors.failure_for(exc, "Verify").status("Verify")
    return {"field": field, "description": description, "reason": reason}, unary_error(status)


def unary_error(status: status_pb2.Status) -> dict[str, Any]:
    """What a client reads from a unary call's google.rpc.Status."""
    out: dict[str, Any] = {"code": _code_name(status.code), "message": status.message,
                           "reason": "", "domain": "", "metadata": {},
                           "field_violations": [], "retry": False}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.update(reason=info.reason, domain=info.domain,
                       metadata=dict(sorted(info.metadata.items())))
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out["field_violations"] = [{"field": v.field, "description": v.description}
                                       for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            out["retry"] = True
    return out


def _code_name(number: int) -> str:
    return next(code.name for code in StatusCode if code.value[0] == number)


def invalid_cases() -> list[dict[str, Any]]:
    known = {case["name"]: case for case in json.loads(ERRORS_CASES.read_text("utf-8"))["cases"]}
    cases = []
    for case_id, errors_case, fields in REFUSED:
        message = pb.VerifyRequest(**fields)
        try:
            requests.verify_query(message, TokenConfig())
        except BadRequest as exc:
            invalid, expect = server_refusal(exc)
        else:
            raise AssertionError(f"{case_id}: tokend accepts {fields}")
        if errors_case is not None:  # the same refusal as the errors suite names
            named = known[errors_case]
            assert (named["code"], named["reason"], named.get("field", "")) == (
                expect["code"], expect["reason"], invalid["field"]), case_id
        cases.append({"id": case_id, "errors_case": errors_case, "request": fields,
                      "invalid": invalid, "expect": expect})
    # A refusal naming no field (tokend has none for Verify today; the rule covers it):
    # no BadRequest detail and no "field" in the ErrorInfo metadata.
    invalid, expect = server_refusal(BadRequest("this request cannot be verified"))
    assert invalid["field"] == "" and expect["field_violations"] == []
    cases.append({"id": "no-field", "errors_case": None, "request": None,
                  "invalid": invalid, "expect": expect})
    # A tokend that leaves InvalidRequest.reason empty: every client names it
    # INVALID_REQUEST (the reason of a refusal naming no known field, docs/errors.md).
    first = cases[0]
    invalid = {**first["invalid"], "reason": ""}
    expect = {**first["expect"], "reason": "INVALID_REQUEST"}
    cases.append({"id": "no-reason", "errors_case": None, "request": first["request"],
                  "invalid": invalid, "expect": expect})
    return cases


ABOUT = (
    "The Verify batching rules every client shares (docs/clients.md 'Verify calls are "
    "batched'; format: conformance/README.md 'Batching cases'). Made by "
    "conformance/batching/make_cases.py; read by the unit tests of the Python, Go, Node and "
    "Java clients."
)


def document() -> dict[str, Any]:
    return {"about": ABOUT, "max_batch_bytes": MAX_BATCH_BYTES,
            "split": split_cases(), "invalid": invalid_cases()}


def render(doc: dict[str, Any]) -> str:
    """Indented JSON with each request and each chunk on one line (a case may hold
    hundreds)."""
    lines: dict[str, str] = {}

    def mark(values: list[Any]) -> list[str]:
        out = []
        for item in values:
            text = json.dumps(item, ensure_ascii=False, separators=(", ", ": "))
            key = f"@@{len(lines)}@@"
            lines[key] = text
            out.append(key)
        return out

    marked = {**doc, "split": [
        {**case, "requests": mark(case["requests"]),
         "expect": {"chunks": mark(case["expect"]["chunks"]),
                    "chunk_bytes": case["expect"]["chunk_bytes"]}}
        for case in doc["split"]]}
    text = json.dumps(marked, ensure_ascii=False, indent=1)
    for key, line in lines.items():
        text = text.replace(f'"{key}"', line, 1)
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed file; write nothing")
    args = parser.parse_args(argv)
    text = render(document())
    if args.check:
        if not CASES.is_file() or CASES.read_text("utf-8") != text:
            print(f"{CASES} is out of date: run conformance/batching/make_cases.py",
                  file=sys.stderr)
            return 1
        return 0
    CASES.write_text(text, "utf-8")
    print(f"wrote {CASES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
