"""Soak benchmark: many short calls in sequence; does the gateway give back what each call took?

The gateway (bench.gateway_proc: the real app, an instant synthetic voice) serves --calls short emulated
calls (each hears --speech-s of audio, echoes the mark and hangs up), placed one after another on each of
--lanes concurrent lanes (default 1: strictly sequential, about 2.5 minutes for 1000 calls).
RSS is sampled every --sample-every calls after a warm-up; the slope is a least-squares fit in kB per call.
Leaked tasks = asyncio tasks alive in the gateway after the last call minus those alive after warm-up.

Every --odd-every'th call (default 5) is, in turn, refused (a forged stream token), abandoned (the webhook
answered, no stream ever opens) or dropped (the connection dies mid-greeting); a call that does not end as it
should (a completed call without its mark, a forged token admitted, a call still active at the end) is a
failure.

    python -m bench.soak [--calls 1000] [--lanes 1] [--speech-s 0.1] [--odd-every 5]
Last line:
    soak: calls=<n> completed=<c> refused=<r> abandoned=<a> dropped=<d> failures=<f> rss_start_mb=<a>
          rss_end_mb=<b> slope_kb_per_call=<s> leaked_tasks=<t>
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from typing import Any

import httpx

from bench.common import Gateway, gateway, place_call
from gateway.twilio.emulator import CallControl, TwilioEmulator, parse_stream
from gateway.twilio.security import TOKEN_PARAMETER


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


async def stats(client: httpx.AsyncClient, gw: Gateway) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"{gw.url}/bench/stats", timeout=10)).json()
    return body


ODD = ("refused", "abandoned", "dropped")


async def soak(gw: Gateway, calls: int, lanes: int, warmup: int, sample_every: int,
               max_seconds: float, odd_every: int = 5) -> None:
    emu = TwilioEmulator(gw.url)
    failures: list[str] = []
    done = 0
    samples: list[tuple[int, float]] = []

    kinds: dict[str, int] = {"completed": 0, "refused": 0, "abandoned": 0, "dropped": 0}

    async def odd_call(kind: str) -> str | None:
        """A call that does not go as planned; returns what went wrong on the gateway's side, if anything."""
        twiml, call_sid = await emu.fetch_twiml(agent="bench")
        if parse_stream(twiml) is None:
            return f"{call_sid}: webhook refused a {kind} call: {twiml[:80]}"
        if kind == "abandoned":  # the webhook took a slot; the stream never comes (it must expire)
            return None
        if kind == "refused":  # a forged stream token: refused at `start`, nothing played
            r = await emu.open_stream(twiml, call_sid, params={TOKEN_PARAMETER: "forged", "agent": "bench"},
                                      max_s=20)
            return None if r.close_code == 1008 and not r.audio else f"{call_sid}: forged token not refused"

        async def drop(c: CallControl) -> None:  # the caller's connection dies mid-greeting (no `stop`)
            for _ in range(4000):  # at most 20 s for the first frame
                if c.result.media_times:
                    break
                await asyncio.sleep(0.005)
            await c.ws.close()

        r = await emu.open_stream(twiml, call_sid, script=drop, hold_s=0.0, max_s=20)
        return None if r.audio and not r.errors else f"{call_sid}: dropped call: errors={r.errors}"

    async def lane(count: int) -> None:
        nonlocal done
        for i in range(count):
            kind = ODD[(done + i) // odd_every % len(ODD)] if odd_every and (done + i) % odd_every == 0 else ""
            if kind:
                problem = await odd_call(kind)
                if problem:
                    failures.append(problem)
                kinds[kind] += 1
                done += 1
                continue
            placed = await place_call(emu, "bench", hold_s=0.0, max_s=20)
            r = placed.result
            if r.marks_echoed != ["greeting-1"] or r.errors:
                failures.append(f"{placed.call_sid}: marks={r.marks_echoed} errors={r.errors}")
            kinds["completed"] += 1
            done += 1
            if done % sample_every == 0:
                samples.append((done, gw.rss_mb()))

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(lane(warmup // lanes) for _ in range(lanes)))
        await asyncio.sleep(0.5)
        start = await stats(client, gw)
        rss_start = gw.rss_mb()
        done, samples = 0, [(0, rss_start)]
        kinds.update(dict.fromkeys(kinds, 0))
        failures.clear()
        started = time.monotonic()
        print(f"warm-up: {warmup} calls; RSS {rss_start:.1f} MB; {start['tasks']} tasks; {lanes} lane(s)")
        print(f"{'calls':>6} {'rss MB':>8} {'elapsed s':>9}")
        per_lane = calls // lanes
        progress = asyncio.create_task(report(samples, started))
        try:
            await asyncio.wait_for(asyncio.gather(*(lane(per_lane) for _ in range(lanes))), max_seconds)
        except TimeoutError:
            print(f"(stopped after {max_seconds:g} s; use --max-seconds to run longer)")
        finally:
            progress.cancel()
        await asyncio.sleep(1.0)  # let the last sessions finish closing
        end = await stats(client, gw)
        if end["active_calls"]:
            failures.append(f"{end['active_calls']} call(s) still active after the last one ended")
        rss_end = gw.rss_mb()
    elapsed = time.monotonic() - started
    samples.append((done, rss_end))
    kb = slope([float(c) for c, _ in samples], [m * 1024 for _, m in samples])
    print(f"{done:>6} {rss_end:>8.1f} {elapsed:>9.1f}")
    print(f"{done} calls in {elapsed:.0f} s ({done / elapsed:.1f} calls/s); failures: {len(failures)}; "
          f"active calls after: {end['active_calls']}; tasks {start['tasks']} -> {end['tasks']}")
    if "objects" in end:  # BENCH_TRACEMALLOC=1
        print("  live objects after:", end["objects"])
    for line in end.get("growth", []):
        print("  growth:", line)
    for f in failures[:5]:
        print("  failure:", f)
    print(f"soak: calls={done} completed={kinds['completed']} refused={kinds['refused']} "
          f"abandoned={kinds['abandoned']} dropped={kinds['dropped']} failures={len(failures)} "
          f"rss_start_mb={rss_start:.1f} rss_end_mb={rss_end:.1f} slope_kb_per_call={kb:.2f} "
          f"leaked_tasks={end['tasks'] - start['tasks']}")


async def report(samples: list[tuple[int, float]], started: float) -> None:
    shown = 0
    while True:
        await asyncio.sleep(2.0)
        if len(samples) > shown and len(samples) % 4 == 0:
            shown = len(samples)
            c, m = samples[-1]
            print(f"{c:>6} {m:>8.1f} {time.monotonic() - started:>9.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=1, help="concurrent sequences of calls (1 = sequential)")
    parser.add_argument("--speech-s", type=float, default=0.1, help="agent audio per call (seconds)")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--sample-every", type=int, default=25)
    parser.add_argument("--max-seconds", type=float, default=200.0)
    parser.add_argument("--odd-every", type=int, default=5,
                        help="every Nth call is refused (forged token), abandoned (no stream) or dropped "
                             "mid-greeting, in turn (0: none)")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    gc.collect()
    with gateway(args.speech_s, cores[0] if len(cores) > 1 else None) as gw:
        if len(cores) > 1:
            os.sched_setaffinity(0, set(cores[1:]))
        asyncio.run(soak(gw, args.calls, args.lanes, args.warmup, args.sample_every, args.max_seconds,
                         args.odd_every))


if __name__ == "__main__":
    main()
