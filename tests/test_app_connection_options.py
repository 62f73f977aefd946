"""The gRPC server options tokend derives from the `grpc` settings (docs/configuration.md):
connection age and the client ping policy, with their documented defaults."""

from __future__ import annotations

from pathlib import Path

from tests.support.tokend import make_settings
from tokend.app import grpc_connection_options


def options(tmp_path: Path, **grpc: object) -> dict[str, int]:
    settings = make_settings("http://127.0.0.1:1", "token", tmp_path, grpc=grpc)
    return dict(grpc_connection_options(settings))


def test_defaults_rebalance_every_five_minutes_and_police_pings(tmp_path: Path) -> None:
    got = options(tmp_path)
    assert got["grpc.max_connection_age_ms"] == 300_000
    assert got["grpc.max_connection_age_grace_ms"] == 30_000
    assert got["grpc.http2.min_ping_interval_without_data_ms"] == 30_000
    assert got["grpc.keepalive_permit_without_calls"] == 0
    assert got["grpc.http2.max_ping_strikes"] == 2
    assert got["grpc.http2.max_pings_without_data"] == 0
    # The clients ping every 60 s during calls: comfortably within the minimum.
    assert got["grpc.http2.min_ping_interval_without_data_ms"] <= 60_000 // 2


def test_durations_are_read_and_zero_age_means_never(tmp_path: Path) -> None:
    got = options(tmp_path, max_connection_age="1m", max_connection_age_grace="5s",
                  min_client_ping_interval="10s")
    assert got["grpc.max_connection_age_ms"] == 60_000
    assert got["grpc.max_connection_age_grace_ms"] == 5_000
    assert got["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    never = options(tmp_path, max_connection_age=0)
    assert "grpc.max_connection_age_ms" not in never
    assert "grpc.max_connection_age_grace_ms" not in never
