"""Outbound audio queue and the paced sender (I/O shell around the pacing rule).

Frames (exact 160-byte mu-law) and marks are queued in order. The sender keeps
a bounded lead of audio buffered at Twilio: it tracks ``horizon``, the
monotonic time at which Twilio's buffer would run dry, sends while
``horizon - now < lead`` and otherwise sleeps until it may send again. After
a stall (horizon in the past mid-utterance) it counts an underrun and restarts
the horizon at ``now``, so catch-up is bounded by the lead.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.audio import FRAME_SECONDS


@dataclass(frozen=True, slots=True)
class MarkItem:
    name: str


Item = bytes | MarkItem


class Outbound:
    def __init__(
        self,
        send_media: Callable[[bytes], Awaitable[None]],
        send_mark: Callable[[str], Awaitable[None]],
        lead_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        on_frame: Callable[[float], None] | None = None,
        on_underrun: Callable[[], None] | None = None,
    ) -> None:
        self._send_media = send_media
        self._send_mark = send_mark
        self.lead_s = lead_s
        self.clock = clock
        self._queue: collections.deque[Item] = collections.deque()
        self._wakeup = asyncio.Event()
        self.horizon = 0.0  # when Twilio's buffer runs dry
        self.frames_sent = 0
        self.underruns = 0
        self._in_utterance = False  # frames sent since the last mark; a dry buffer here is an underrun
        self._on_frame = on_frame
        self._on_underrun = on_underrun

    def put_frames(self, frames: list[bytes]) -> None:
        self._queue.extend(frames)
        self._wakeup.set()

    def put_mark(self, name: str) -> None:
        self._queue.append(MarkItem(name))
        self._wakeup.set()

    def clear(self) -> list[str]:
        """Drop everything queued locally; returns the names of marks that were never sent."""
        dropped = [i.name for i in self._queue if isinstance(i, MarkItem)]
        self._queue.clear()
        self._in_utterance = False
        self.horizon = self.clock()
        return dropped

    @property
    def queued_frames(self) -> int:
        return sum(1 for i in self._queue if isinstance(i, bytes))

    def buffered_at_twilio(self) -> float:
        return max(0.0, self.horizon - self.clock())

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._queue[0]
            if isinstance(item, MarkItem):
                self._queue.popleft()
                self._in_utterance = False
                await self._send_mark(item.name)
                continue
            now = self.clock()
            if self.horizon < now:
                if self._in_utterance and self.frames_sent and self.horizon > 0 and now - self.horizon > 0.005:
                    self.underruns += 1
                    if self._on_underrun:
                        self._on_underrun()
                self.horizon = now
            wait = self.horizon - now - self.lead_s
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if not self._queue or self._queue[0] is not item:
                continue  # cleared while we slept
            self._queue.popleft()
            if self._on_frame:
                self._on_frame(max(0.0, -wait - FRAME_SECONDS) if self._in_utterance else 0.0)
            self._in_utterance = True
            self.horizon += FRAME_SECONDS
            self.frames_sent += 1
            await self._send_media(item)
