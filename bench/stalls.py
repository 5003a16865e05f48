"""Event-loop stall sampler for the gateway under test (``BENCH_STALLS=FILE``; an experiment, not production).

Frame lateness at a step can come from the loop being held for tens of milliseconds at a time rather than
from running out of CPU. This finds what holds it: a loop callback stamps a heartbeat every 2 ms; a watcher
thread looks every millisecond and, while the loop has not stamped for more than ``threshold_s``, takes the
main thread's stack every 5 ms (the frames running while the loop is held). Every few seconds FILE gets the
stall count, their durations and the most frequent stacks (innermost frames last), most frequent first.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
import threading
import time
import traceback
from pathlib import Path

HEARTBEAT_S = 0.002


def start(loop: asyncio.AbstractEventLoop, path: str, threshold_s: float = 0.01, depth: int = 14) -> None:
    beat = [time.monotonic()]
    main = threading.main_thread().ident
    stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
    stalls: list[float] = []
    others: collections.Counter[str] = collections.Counter()  # other threads' innermost frames during stalls

    gc_ms: dict[int, list[float]] = {0: [], 1: [], 2: []}  # collector pauses per generation (main thread)
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_ms[info["generation"]].append((time.perf_counter() - gc_start[0]) * 1000)

    gc.callbacks.append(on_gc)

    def stamp() -> None:
        beat[0] = time.monotonic()
        loop.call_later(HEARTBEAT_S, stamp)

    def write() -> None:
        durations = sorted(stalls)
        lines = [f"stalls over {threshold_s * 1000:.0f} ms: {len(durations)}"]
        if durations:
            lines.append(f"duration ms: p50 {durations[len(durations) // 2] * 1000:.1f} "
                         f"max {durations[-1] * 1000:.1f} total {sum(durations) * 1000:.0f}")
        for gen, pauses in gc_ms.items():
            done = sorted(pauses)
            if done:
                lines.append(f"gc generation {gen}: {len(done)} collections, p50 {done[len(done) // 2]:.2f} ms, "
                             f"max {done[-1]:.1f} ms, total {sum(done):.0f} ms")
        lines.append("\nother threads during stalls (innermost frame):")
        lines.extend(f"  {n:5d}  {where}" for where, n in others.most_common(15))
        for stack, n in stacks.most_common(25):
            lines.append(f"\n{n} samples:")
            lines.extend(f"  {frame}" for frame in stack)
        Path(path).write_text("\n".join(lines) + "\n")

    def watch() -> None:
        stalled_since: float | None = None
        next_sample = 0.0
        next_write = time.monotonic() + 5.0
        while True:
            time.sleep(0.001)
            now = time.monotonic()
            gap = now - beat[0]
            if gap > threshold_s:
                if stalled_since is None:
                    stalled_since, next_sample = beat[0], now
                if now >= next_sample:
                    frames = sys._current_frames()
                    names = {t.ident: t.name for t in threading.enumerate()}
                    for ident, other in frames.items():
                        if ident not in (main, threading.get_ident()):
                            where = traceback.extract_stack(other)[-1]
                            others[f"{names.get(ident, ident)}: {Path(where.filename).name}:{where.lineno} "
                                   f"{where.name}"] += 1
                    frame = frames.get(main or 0)
                    if frame is not None:
                        summary = traceback.extract_stack(frame)[-depth:]
                        stacks[tuple(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in summary)] += 1
                    next_sample = now + 0.005
            elif stalled_since is not None:
                stalls.append(beat[0] - stalled_since)
                stalled_since = None
            if now >= next_write:
                write()
                next_write = now + 5.0

    loop.call_soon(stamp)
    threading.Thread(target=watch, name="stall-sampler", daemon=True).start()
