"""One timer for many periodic callbacks: every conversation's clock tick, ten times a second.

Rules of this file: callbacks are synchronous and must not block; one that raises is logged and removed, the
others go on. A sleeping task per call woke ten times a second each (a future, a timer and a task step per
tick: at 400 calls 4,000 wake-ups a second, docs/scaling.md). One :class:`SharedTicker` per event loop calls
every registered callback once per ``period_s`` instead, spread over ``slots`` sub-ticks (a callback joins the
emptiest slot), so no single loop callback runs them all at once. The schedule is absolute; after a stall the
next sub-tick comes at once and the schedule goes on from there (no burst of catch-up ticks).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import Callable

log = logging.getLogger("voicegw.ticks")

TICK_S = 0.1  # a conversation's clock: silence timeouts, reprompts, the call's maximum length
SLOTS = 5  # sub-ticks per period (one every 20 ms)


class SharedTicker:
    def __init__(self, period_s: float = TICK_S, slots: int = SLOTS) -> None:
        if period_s <= 0 or slots < 1:
            raise ValueError("period_s must be > 0 and slots >= 1")
        self.period_s = period_s
        self._slots: list[dict[int, Callable[[], None]]] = [{} for _ in range(slots)]
        self._keys = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0  # the slot the next sub-tick serves
        self._due = 0.0  # when the next sub-tick is due (loop time)

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots)

    @property
    def running(self) -> bool:
        return self._handle is not None

    def add(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once per period from now on; returns the function that stops it (idempotent)."""
        slot = min(self._slots, key=len)
        key = next(self._keys)
        slot[key] = callback
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._due = loop.time() + self.period_s / len(self._slots)
            self._handle = loop.call_at(self._due, self._run)

        def remove() -> None:
            slot.pop(key, None)

        return remove

    def _run(self) -> None:
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        for key, callback in list(slot.items()):
            if key not in slot:
                continue  # removed by a callback before it this sub-tick
            try:
                callback()
            except Exception:
                log.exception("periodic callback %r failed: removed", callback)
                slot.pop(key, None)
        if not any(self._slots):
            self._handle = None  # nothing to tick: the timer stops until the next add()
            return
        loop = asyncio.get_running_loop()
        self._due = max(self._due + self.period_s / len(self._slots), loop.time())
        self._handle = loop.call_at(self._due, self._run)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedTicker] = weakref.WeakKeyDictionary()


def shared_ticker() -> SharedTicker:
    """The running event loop's ticker (every :data:`TICK_S`)."""
    loop = asyncio.get_running_loop()
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = SharedTicker()
    return ticker
