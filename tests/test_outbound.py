"""Outbound queue over a real event loop: pause keeps everything queued, resume goes on from the next frame."""

from __future__ import annotations

import asyncio

import pytest

from gateway.outbound import Outbound


async def test_pause_holds_frames_and_marks_and_resume_loses_nothing() -> None:
    written: list[bytes | str] = []
    done = asyncio.Event()

    progress = asyncio.Event()

    async def media(frames: list[bytes]) -> None:
        written.extend(frames)
        progress.set()

    async def mark(name: str) -> None:
        written.append(name)
        if name == "end":
            done.set()

    out = Outbound(media, mark, lead_s=0.06)
    frames = [bytes([i]) * 160 for i in range(12)]
    out.put_mark("start")
    out.put_frames(frames[:6])
    out.pause()
    task = asyncio.create_task(out.run())
    try:
        for _ in range(20):  # the sender gets every chance to run: nothing goes out while paused
            await asyncio.sleep(0)
        out.put_frames(frames[6:])
        out.put_mark("end")
        await asyncio.sleep(0.05)
        assert written == [] and out.paused
        out.resume()
        await asyncio.wait_for(done.wait(), 10)
        assert written == ["start", *frames, "end"]
        assert out.starvations == 0  # the paused gap is not starvation
        out.pause()
        out.put_frames(frames[:3])
        await asyncio.sleep(0.05)
        assert len(written) == 14
        out.resume()
        out.resume()  # idempotent
        while len(written) < 17:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 10)
        assert written[14:] == frames[:3]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_hold_takes_back_what_twilio_has_not_played_and_resume_plays_it_once() -> None:
    clock = FakeClock()
    written: list[bytes | str] = []
    progress = asyncio.Event()

    async def media(frames: list[bytes]) -> None:
        written.extend(frames)
        progress.set()

    async def mark(name: str) -> None:
        written.append(name)
        progress.set()

    out = Outbound(media, mark, lead_s=0.1, clock=clock)
    frames = [bytes([i]) * 160 for i in range(30)]
    out.put_mark("turn1-start")
    out.put_frames(frames[:10])
    out.put_mark("s1")
    out.put_frames(frames[10:])
    out.put_mark("s2")
    task = asyncio.create_task(out.run())
    try:
        while len(written) < 13:  # 0.2 s of stream time: the lead (5 frames) plus 5 more, and the mark s1
            await asyncio.wait_for(progress.wait(), 10)
            progress.clear()
            if clock.t < 0.2:
                clock.t = round(clock.t + 0.02, 3)
        # hold when 2 frames of the lead have played since the last write: what is unplayed comes back
        clock.t = round(clock.t + 0.04, 3)
        sent = list(written)
        unplayed = round((out.pacer.horizon - clock.t) / 0.02)
        taken_marks = out.hold()
        assert 1 <= unplayed <= 5
        kept = [x for x in sent if isinstance(x, bytes)][: -unplayed]
        assert set(taken_marks) <= {"s1"}
        for _ in range(10):
            await asyncio.sleep(0)
        assert written == sent  # held: nothing more goes out
        out.resume()
        while "s2" not in written:
            clock.t = round(clock.t + 0.02, 3)
            await asyncio.sleep(0.001)
        played_frames = kept + [x for x in written[len(sent):] if isinstance(x, bytes)]
        assert played_frames == frames  # nothing lost, nothing repeated
        assert written[-1] == "s2"
        assert ("s1" in written[len(sent):]) == ("s1" in taken_marks)  # a mark taken back is sent again, once
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_two_frames_per_write_go_out_together_in_order() -> None:
    """per_wake=2: after the first fill, every write carries two frames (one wake-up per 40 ms of audio);
    a sentence's odd last frame goes alone before its mark; nothing is reordered or lost."""
    clock = FakeClock()
    writes: list[list[bytes] | str] = []
    progress = asyncio.Event()

    async def media(frames: list[bytes]) -> None:
        writes.append(list(frames))
        progress.set()

    async def mark(name: str) -> None:
        writes.append(name)
        progress.set()

    out = Outbound(media, mark, lead_s=0.1, clock=clock, per_wake=2)
    frames = [bytes([i]) * 160 for i in range(27)]
    out.put_frames(frames)
    out.put_mark("end")
    task = asyncio.create_task(out.run())
    try:
        while "end" not in writes:  # the sender wakes exactly when its next frame is due
            await asyncio.wait_for(progress.wait(), 10)
            progress.clear()
            clock.t = max(clock.t, out.pacer.next_send_at())
        groups = [w for w in writes if isinstance(w, list)]
        assert [f for g in groups for f in g] == frames
        assert len(groups[0]) == 7 and all(len(g) == 2 for g in groups[1:-1]) and len(groups[-1]) in (1, 2)
        assert writes[-1] == "end"
        assert out.lead_s == 0.1 and out.pacer.per_wake == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_lateness_is_reported_once_per_write_as_its_first_frames() -> None:
    """A sender that wakes 30 ms late writes its group at once: one report, 30 ms (the first frame's)."""
    clock = FakeClock()
    late: list[float] = []
    writes: list[list[bytes]] = []
    wrote = asyncio.Event()

    async def media(frames: list[bytes]) -> None:
        writes.append(frames)
        wrote.set()

    async def mark(name: str) -> None:
        pass

    out = Outbound(media, mark, lead_s=0.1, clock=clock, per_wake=2, on_write=late.append)
    out.put_frames([bytes([i]) * 160 for i in range(40)])
    task = asyncio.create_task(out.run())
    try:
        await asyncio.wait_for(wrote.wait(), 10)  # the first fill: 7 frames, not late
        wrote.clear()
        clock.t = out.pacer.next_send_at() + 0.03
        await asyncio.wait_for(wrote.wait(), 10)
        assert [len(w) for w in writes] == [7, 3]  # the lead refilled: the frame 30 ms overdue and two more
        assert late == [0.0, pytest.approx(0.03)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
