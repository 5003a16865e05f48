"""bench/common.py: the machine-speed probe each load step prints."""

from __future__ import annotations

import os

from bench.common import speed_probe_ms


def test_the_speed_probe_times_its_loop_on_the_core_it_is_given() -> None:
    core = min(os.sched_getaffinity(0))
    pinned, free = speed_probe_ms(core), speed_probe_ms(None)
    # 30 sums of a million integers: tens of milliseconds at the very least, far less than the probe's timeout
    assert 20 < pinned < 60_000 and 20 < free < 60_000
