"""The benchmark gateway's collector-pause report (bench/gateway_proc.py)."""

from __future__ import annotations

import gc

import pytest

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


def test_long_pauses_are_logged_with_what_the_young_generations_hold(capsys: pytest.CaptureFixture[str]) -> None:
    class Held:  # what a backlog keeps alive in the young generations
        pass

    pauses = GcPauses(log_over_ms=0.0)
    enabled = gc.isenabled()
    gc.disable()  # (no automatic collection may move them out of the young generation first)
    held = [Held() for _ in range(25_000)]
    try:
        gc.collect(0)
        err = capsys.readouterr().err
        assert "gc pause: generation 0" in err and "collected" in err
        assert "gc young generation: [('Held'," in err  # the commonest type named, with examples
        gc.collect(0)
        assert "gc young generation" not in capsys.readouterr().err  # described once
    finally:
        gc.callbacks.remove(pauses._on_gc)
        del held
        if enabled:
            gc.enable()
