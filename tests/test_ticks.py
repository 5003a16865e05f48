"""The shared ticker (gateway/ticks.py): one timer for many periodic callbacks."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import pytest

from gateway.ticks import SharedTicker


class Probe:
    """Callbacks poke it; a test waits for a condition on what they recorded (no polling on the clock)."""

    def __init__(self) -> None:
        self.poked = asyncio.Event()

    def poke(self) -> None:
        self.poked.set()

    def appender(self, out: list[Any], value: Callable[[], Any]) -> Callable[[], None]:
        """A callback that appends ``value()`` to ``out`` and pokes."""
        def callback() -> None:
            out.append(value())
            self.poked.set()
        return callback

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            self.poked.clear()
            await self.poked.wait()


async def _stopped(ticker: SharedTicker) -> bool:
    """Whether the timer stopped by the time one period has passed: its next sub-tick (due within a period, on the
    same loop's timers) runs before this sleep ends, however loaded the machine."""
    await asyncio.sleep(ticker.period_s)
    return not ticker.running


async def test_every_callback_runs_once_per_period_each_in_its_own_sub_tick() -> None:
    ticker = SharedTicker(period_s=0.05, slots=5)
    loop = asyncio.get_running_loop()
    seen: dict[int, list[float]] = {k: [] for k in range(5)}
    probe = Probe()
    stops = [ticker.add(probe.appender(seen[k], loop.time)) for k in range(5)]
    assert ticker.running and len(ticker) == 5
    await probe.until(lambda: all(len(times) >= 4 for times in seen.values()))
    # five callbacks, five slots: each in its own sub-tick, so no two ran in the same loop callback
    firsts = sorted(times[0] for times in seen.values())
    assert len(set(firsts)) == 5
    for stop in stops:
        stop()
        stop()  # idempotent
    counts = {k: len(v) for k, v in seen.items()}
    assert await _stopped(ticker)  # nothing left to tick: the timer stopped
    assert {k: len(v) for k, v in seen.items()} == counts


async def test_rounds_follow_in_order_and_a_callback_never_runs_twice_per_round() -> None:
    ticker = SharedTicker(period_s=0.04, slots=4)
    order: list[str] = []
    probe = Probe()
    stops = [ticker.add(probe.appender(order, functools.partial(str, name))) for name in "abcdefgh"]  # two a slot
    await probe.until(lambda: len(order) >= 24)
    for stop in stops:
        stop()
    rounds = [order[i:i + 8] for i in range(0, 24, 8)]
    assert all(sorted(r) == list("abcdefgh") for r in rounds)  # each round: everyone exactly once
    assert rounds[0] == rounds[1] == rounds[2]  # in the same order every round


async def test_a_failing_callback_is_logged_and_removed_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    ticker = SharedTicker(period_s=0.03, slots=1)
    good: list[int] = []

    def bad() -> None:
        raise RuntimeError("boom")

    probe = Probe()
    ticker.add(bad)
    stop = ticker.add(probe.appender(good, lambda: 1))
    with caplog.at_level(logging.ERROR, logger="voicegw.ticks"):
        await probe.until(lambda: len(good) >= 3)
    assert len(ticker) == 1 and sum("periodic callback" in r.message for r in caplog.records) == 1
    stop()


async def test_a_callback_removed_by_an_earlier_one_in_the_same_sub_tick_does_not_run() -> None:
    ticker = SharedTicker(period_s=0.03, slots=1)
    ran: list[str] = []
    stops: dict[str, object] = {}

    probe = Probe()

    def first() -> None:
        ran.append("first")
        probe.poke()
        stops["second"]()  # type: ignore[operator]

    stops["first"] = ticker.add(first)
    stops["second"] = ticker.add(lambda: ran.append("second"))
    await probe.until(lambda: len(ran) >= 3)
    assert "second" not in ran
    stops["first"]()  # type: ignore[operator]


async def test_adding_after_it_stopped_starts_it_again() -> None:
    ticker = SharedTicker(period_s=0.02, slots=2)
    hits: list[int] = []
    probe = Probe()
    stop = ticker.add(probe.appender(hits, lambda: 1))
    await probe.until(lambda: len(hits) >= 1)
    stop()
    assert await _stopped(ticker)
    stop = ticker.add(probe.appender(hits, lambda: 2))
    assert ticker.running
    await probe.until(lambda: 2 in hits)
    stop()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SharedTicker(period_s=0)
    with pytest.raises(ValueError):
        SharedTicker(slots=0)
