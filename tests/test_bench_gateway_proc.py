"""The benchmark gateway's collector-pause report (bench/gateway_proc.py)."""

from __future__ import annotations

import gc

from bench.gateway_proc import GcPauses


def test_collector_pauses_are_counted_per_generation_and_reset_when_taken() -> None:
    pauses = GcPauses()
    try:
        gc.collect(1)
        gc.collect(2)
        gc.collect(2)
        taken = pauses.take()
        assert taken[2][0] == 2 and taken[1][0] >= 1  # (automatic collections may add to the count)
        count, total_ms, longest_ms = taken[2]
        assert 0 < longest_ms <= total_ms
        again = pauses.take()
        assert 2 not in again  # taken once: the next report starts from zero
    finally:
        gc.callbacks.remove(pauses._on_gc)
