"""conformance/batching/cases.json against the Python client's batcher (tokend_client/_batch.py).

The same file is read by the Go, Node and Java clients' unit tests (conformance/README.md
"Batching cases"): how ``verify_many`` splits requests into VerifyMany calls (the chunks
and their encoded sizes), how the verify queue takes its batches by the same rule, and the
error a VerifyMany item's ``InvalidRequest`` becomes.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tokend_client import InvalidArgumentError
from tokend_client._batch import (
    MAX_BATCH_BYTES,
    BatchSettings,
    Item,
    VerifyQueue,
    chunks,
    encoded_size,
    item_outcome,
)
from tokend_client.v1 import tokend_pb2 as pb

CASES_FILE = Path(__file__).resolve().parents[3] / "conformance" / "batching" / "cases.json"
CASES: dict[str, Any] = json.loads(CASES_FILE.read_text("utf-8"))


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["id"] for case in cases]


def _request(spec: dict[str, Any]) -> pb.VerifyRequest:
    """A case's request: the token is 'x' repeated token_length times (README)."""
    return pb.VerifyRequest(token="x" * spec["token_length"], audience=spec["audience"],
                            required_scopes=spec["required_scopes"])


def test_the_file_has_cases_of_both_kinds() -> None:
    # A runner that finds nothing to check must not pass.
    assert len(CASES["split"]) >= 10 and len(CASES["invalid"]) >= 5
    assert CASES["max_batch_bytes"] == MAX_BATCH_BYTES


@pytest.mark.parametrize("case", CASES["split"], ids=_ids(CASES["split"]))
def test_verify_many_splits_as_the_case_says(case: dict[str, Any]) -> None:
    requests = [_request(spec) for spec in case["requests"]]
    index = {id(request): n for n, request in enumerate(requests)}
    got = list(chunks(requests, case["max_batch"]))
    assert [[index[id(r)] for r in chunk] for chunk in got] == case["expect"]["chunks"]
    # The size that counts, by the protobuf library and by the client's own sum.
    assert [pb.VerifyManyRequest(requests=chunk).ByteSize() for chunk in got] == \
        case["expect"]["chunk_bytes"]
    assert [sum(map(encoded_size, chunk)) for chunk in got] == case["expect"]["chunk_bytes"]


@pytest.mark.parametrize("case", CASES["split"], ids=_ids(CASES["split"]))
def test_the_verify_queue_takes_batches_by_the_same_rule(case: dict[str, Any]) -> None:
    """Every request queued behind one RPC in flight, then taken batch by batch as RPCs end."""
    queue = VerifyQueue(BatchSettings(max_in_flight=1, max_batch=case["max_batch"]))
    deadline = time.monotonic() + 3600

    def item(request: pb.VerifyRequest) -> Item:
        return Item(request, deadline, concurrent.futures.Future())

    assert queue.submit(item(_request({"token_length": 1, "audience": "a",
                                       "required_scopes": []}))) is not None
    items = [item(_request(spec)) for spec in case["requests"]]
    for queued in items:
        assert queue.submit(queued) is None  # the one slot is taken: it waits
    taken = []
    while (batch := queue.finished()) is not None:
        taken.append([items.index(member) for member in batch.items])
    assert taken == case["expect"]["chunks"]


@pytest.mark.parametrize("case", CASES["invalid"], ids=_ids(CASES["invalid"]))
def test_an_invalid_item_raises_what_unary_verify_raises(case: dict[str, Any]) -> None:
    error = item_outcome(pb.VerifyManyResult(invalid=pb.InvalidRequest(**case["invalid"])))
    expect = case["expect"]
    assert isinstance(error, InvalidArgumentError)
    assert error.code is getattr(grpc.StatusCode, expect["code"])
    assert error.message == expect["message"]
    assert error.reason == expect["reason"]
    assert error.domain == expect["domain"]
    assert dict(error.metadata) == expect["metadata"]
    assert [{"field": v.field, "description": v.description}
            for v in error.field_violations] == expect["field_violations"]
    assert (error.retry_delay is not None) is expect["retry"]
