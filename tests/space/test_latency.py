"""The latency tool times the Space's prediction function once per command."""

from __future__ import annotations

import pytest

from space.latency import measure_latency


def test_latency_covers_every_command_with_ordered_percentiles(space_resources):
    commands = ["open my mail", "احذف الملف", "book a table for two tonight"]
    latency = measure_latency(space_resources.classifier, commands, warmup=1, repeats=2)
    assert latency.calls == len(commands)
    assert 0 < latency.p50_ms <= latency.p90_ms <= latency.max_ms
    assert "3 calls: p50" in str(latency)


def test_latency_needs_commands(space_resources):
    with pytest.raises(ValueError, match="no commands"):
        measure_latency(space_resources.classifier, [])
