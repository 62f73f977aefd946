"""`vault.rotation_period`: running replicas rotate by themselves, once per period."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend.keys.kv import KvKeyring
from tokend.keys.transit import TransitKeyring

PERIOD = 1.5


@pytest.mark.parametrize("custody", ["transit", "kv"])
def test_two_replicas_rotate_on_schedule_without_doubling(
        bao: BaoDevServer, tmp_path: Path, custody: str) -> None:
    name = f"sched-{custody}-{uuid.uuid4().hex[:6]}"
    settings = make_settings(bao.addr, bao.token, tmp_path, jwks_max_age=0, vault={
        "key_name": name, "custody": custody, "key_refresh_interval": 0.2,
        "propagation_delay": 0.5, "rotation_period": PERIOD})
    with RunningTokend(settings), RunningTokend(settings):
        time.sleep(2 * PERIOD + 1)
    watcher = (TransitKeyring if custody == "transit" else KvKeyring)(bao.client(), key_name=name)
    watcher.load()
    created = [v.created for v in watcher.schedule().versions]
    assert 3 <= len(created) <= 4, created  # two rotations; a rare race may add one
    gaps = [b - a for a, b in itertools.pairwise(created)]
    assert sum(gap >= PERIOD for gap in gaps) == 2, gaps  # one rotation per period
