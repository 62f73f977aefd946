"""tokend.config: the settings that are not covered where they act."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend.config import load_settings
from tokend_client.v1 import tokend_pb2 as pb


@pytest.mark.parametrize(("text", "seconds"), [("3ms", 0.003), ("0.5ms", 0.0005),
                                               ("0.02", 0.02), ("0s", 0.0)])
def test_batch_wait_takes_milliseconds(text: str, seconds: float) -> None:
    settings = load_settings(None, insecure_plaintext=True, signing={"batch_wait": text})
    assert settings.signing.batch_wait == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["51ms", "1s", "-1ms", "3 ms", "3us"])
def test_batch_wait_out_of_range_or_unreadable_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="batch_wait"):
        load_settings(None, insecure_plaintext=True, signing={"batch_wait": text})


def test_issues_arriving_together_wait_for_batch_wait(bao: BaoDevServer, tmp_path: Path
                                                      ) -> None:
    """signing.batch_wait reaches the batcher: with 50 ms, ten Issues made at once leave in
    at most two Transit calls (the first at once, the rest together after the wait)."""
    settings = make_settings(bao.addr, bao.token, tmp_path, signing={"batch_wait": "50ms"})
    with RunningTokend(settings) as running:
        batcher = running.app._batcher
        assert batcher is not None
        running.stub.Issue(pb.IssueRequest(subject="warm", audience=["orders"]), timeout=10)
        time.sleep(0.1)  # the warm-up's batch is 50 ms behind us
        calls_before, start = batcher.calls, threading.Barrier(10)

        def issue() -> None:
            start.wait(5)
            running.stub.Issue(pb.IssueRequest(subject="alice", audience=["orders"]), timeout=10)

        threads = [threading.Thread(target=issue) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert 1 <= batcher.calls - calls_before <= 2
