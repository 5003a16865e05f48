"""Outbound audio queue and the paced sender (I/O shell around :class:`gateway.playout.Pacer`).

Frames (exact 160-byte mu-law) and marks are queued in order. The sender asks
the pacer how many frames may go now (bounded lead at Twilio, bounded burst
after a stall, ``per_wake`` frames at a time), hands them to one ``send_media``
call, and sleeps on the monotonic clock until the next frame is due or new
audio arrives. Marks go out as soon as every frame before
them has been written. :meth:`clear` drops everything queued at once; the
caller sends ``clear`` to Twilio. :meth:`retract` takes back the newest
queued frames (a sentence restarted by the fallback) and
:meth:`twilio_cleared` tells the pacer Twilio's buffer was emptied without
touching the local queue. :meth:`pause` stops writing (what is queued stays
queued, in order) and :meth:`resume` goes on from the very next frame, so
nothing is lost or repeated: the speculative reply's held audio. :meth:`hold`
is a pause that also takes back what Twilio has not played yet (recently
written frames and marks, estimated from the pacer's horizon) and puts it at
the front of the queue: the caller sends ``clear`` and the agent stops at
once (barge-in onset); :meth:`resume` then plays on from exactly where the
caller stopped hearing, to within a frame.

Two kinds of gap are counted as underruns (``on_underrun``): the sender
stalled while frames were waiting (the pacer sees it), and the queue ran dry
mid-sentence because synthesis was slower than real time (*starvation*, seen
here: audio arrives after the horizon with no mark in between).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from audio.formats import FRAME_SECONDS
from gateway.playout import Pacer


@dataclass(frozen=True, slots=True)
class MarkItem:
    name: str


Item = bytes | MarkItem
RECENT_ITEMS = 200  # written items remembered for hold(): 4 s of frames, far more than any lead


class Outbound:
    def __init__(
        self,
        send_media: Callable[[list[bytes]], Awaitable[None]],
        send_mark: Callable[[str], Awaitable[None]],
        lead_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        on_write: Callable[[float], None] | None = None,
        on_underrun: Callable[[], None] | None = None,
        max_burst: int | None = None,
        per_wake: int = 1,
    ) -> None:
        self._send_media = send_media  # the frames of one wake-up, in order
        self._send_mark = send_mark
        self.pacer = Pacer(lead_s=lead_s, frame_s=FRAME_SECONDS, max_burst=max_burst, per_wake=per_wake)
        self.clock = clock
        self._queue: collections.deque[Item] = collections.deque()
        self._wakeup = asyncio.Event()
        self.horizon = 0.0  # when the frame being written (or last written) finishes playing
        self.starvations = 0
        self._in_sentence = False  # frames sent since the last mark
        self._on_write = on_write  # per write: how late its first (most overdue) frame left
        self._on_underrun = on_underrun
        self.paused = False
        self._recent: collections.deque[Item] = collections.deque(maxlen=RECENT_ITEMS)  # written, newest last

    @property
    def lead_s(self) -> float:
        return self.pacer.lead_s

    @property
    def frames_sent(self) -> int:
        return self.pacer.frames_sent

    @property
    def underruns(self) -> int:
        return self.pacer.underruns + self.starvations

    def put_frames(self, frames: list[bytes]) -> None:
        self._queue.extend(frames)
        self._wakeup.set()

    def put_mark(self, name: str) -> None:
        self._queue.append(MarkItem(name))
        self._wakeup.set()

    def pause(self) -> None:
        """Stop writing frames and marks; the queue is kept."""
        self.paused = True
        self._in_sentence = False  # the gap that follows is ours, not starvation

    def resume(self) -> None:
        """Write again from the next queued item (the pacer restarts: no burst for the paused time)."""
        if not self.paused:
            return
        self.paused = False
        now = self.clock()
        if self.pacer.horizon < now:
            self.pacer.reset(now)
            self.horizon = now
        self._wakeup.set()

    def hold(self) -> list[str]:
        """Pause and take back what Twilio has not played yet; returns the names of marks taken back (they were
        written after audio that had not played: the caller's ``clear`` makes Twilio echo them early)."""
        self.paused = True
        self._in_sentence = False
        now = self.clock()
        unplayed = round(max(0.0, self.pacer.horizon - now) / FRAME_SECONDS)
        taken: list[Item] = []
        frames = 0
        while self._recent and frames < unplayed:
            item = self._recent.pop()
            taken.append(item)
            frames += isinstance(item, bytes)
        while self._recent and isinstance(self._recent[-1], MarkItem) and unplayed:
            taken.append(self._recent.pop())  # a start mark just before the first unplayed frame
        self._queue.extendleft(taken)  # taken is newest first: extendleft restores the order
        self.pacer.reset(now)
        self.horizon = now
        return [i.name for i in taken if isinstance(i, MarkItem)]

    def clear(self) -> list[str]:
        """Drop everything queued locally; returns the names of marks that were never sent."""
        dropped = [i.name for i in self._queue if isinstance(i, MarkItem)]
        self._queue.clear()
        self._recent.clear()
        self.paused = False
        self._in_sentence = False
        now = self.clock()
        self.pacer.reset(now)
        self.horizon = now
        return dropped

    def retract(self, frames: int) -> int:
        """Take back up to ``frames`` of the newest queued frames (never past a mark); returns how many."""
        taken = 0
        while taken < frames and self._queue and isinstance(self._queue[-1], bytes):
            self._queue.pop()
            taken += 1
        return taken

    def twilio_cleared(self) -> None:
        """A ``clear`` emptied Twilio's buffer; what is queued here stays queued."""
        self._recent.clear()
        now = self.clock()
        self.pacer.reset(now)
        self.horizon = now
        self._in_sentence = False

    def buffered_at_twilio(self) -> float:
        return self.pacer.buffered(self.clock())

    def _frames_ready(self) -> int:
        n = 0
        for item in self._queue:
            if not isinstance(item, bytes) or n >= self.pacer.max_burst:
                break
            n += 1
        return n

    async def run(self) -> None:
        while True:
            if not self._queue or self.paused:
                self.pacer.end_of_audio()  # the pacer must not blame itself for the silence that follows
                self._wakeup.clear()
                await self._wakeup.wait()
                now = self.clock()
                if self._in_sentence and self.pacer.horizon < now - self.pacer.underrun_tolerance_s:
                    self.starvations += 1
                    if self._on_underrun:
                        self._on_underrun()
                continue
            item = self._queue[0]
            if isinstance(item, MarkItem):
                self._queue.popleft()
                self._recent.append(item)
                self._in_sentence = False
                await self._send_mark(item.name)
                continue
            now = self.clock()
            underruns = self.pacer.underruns
            n = self.pacer.take(now, self._frames_ready())
            if self.pacer.underruns > underruns and self._on_underrun:
                self._on_underrun()
            if n == 0:
                await asyncio.sleep(max(0.0, self.pacer.next_send_at() - now))
                continue
            # How late the sender woke (stall included): the first frame's lateness, the write's worst.
            late = self.pacer.last_lateness if self._in_sentence and self.pacer.last_lateness is not None else 0.0
            if self._on_write:
                self._on_write(late)
            start = self.pacer.horizon - n * FRAME_SECONDS
            frames: list[bytes] = []
            for k in range(n):
                frame = self._queue.popleft()
                assert isinstance(frame, bytes)  # _frames_ready counted n frames before any mark
                frames.append(frame)
                self._recent.append(frame)
                self.horizon = start + (k + 1) * FRAME_SECONDS
            self._in_sentence = True
            await self._send_media(frames)
