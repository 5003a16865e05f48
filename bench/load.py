"""Load benchmark: how many concurrent calls one gateway core carries with clean audio.

The gateway (bench.gateway_proc: the real app, an instant synthetic 24 kHz voice) runs pinned to one
core; emulated Twilio calls run in worker processes on the other core(s), all on 127.0.0.1. Concurrency
ramps up step by step; each step places N calls (starts spread over --stagger seconds) that each hear
--speech-s seconds of agent audio while streaming 20 ms inbound frames, like Twilio. A step holds when the
gateway's p99 frame lateness is at most 10 ms, no underrun appears (gateway or caller side) and every call
hears its whole sentence. The ramp stops at the first step that does not hold or when --max-seconds is
spent.

Reported per step: p50/p99 frame lateness (from the gateway's histogram, interpolated in its buckets),
underruns, gateway CPU (share of its core) and RSS growth per call, the callers' own CPU (if a worker is
saturated the step is marked client-bound and the ramp stops: the numbers would measure the driver), and
gateway-added latency: sentence audio ready in the gateway -> first media frame received by the caller.

    python -m bench.load [--max-seconds 170] [--speech-s 6] [--steps 10,20,40,...]
Last line:
    load: max_calls_per_core=<n> p99_frame_lateness_ms=<x> underruns=<u> rss_per_call_mb=<m> added_latency_p99_ms=<a>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import ROOT, Gateway, bucket_quantile, counter, gateway, histogram, percentile, place_call
from gateway.twilio.emulator import TwilioEmulator

DEFAULT_STEPS = "20,40,80,120,160,200,250,300,400,500"


# ---- worker: emulated callers -------------------------------------------------------------------
async def _worker(url: str, calls: int, stagger: float, max_s: float) -> dict[str, Any]:
    emu = TwilioEmulator(url)
    t_cpu = os.times()

    async def one() -> dict[str, Any]:
        await asyncio.sleep(random.uniform(0, stagger))
        try:
            placed = await place_call(emu, "bench", hold_s=0.2, max_s=max_s)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        r = placed.result
        return {"sid": placed.call_sid, "first_media_at": placed.first_media_at, "underruns": r.underruns,
                "marks": r.marks_echoed, "errors": r.errors, "seconds": r.seconds}

    started = time.monotonic()
    results = await asyncio.gather(*(one() for _ in range(calls)))
    wall = time.monotonic() - started
    t_end = os.times()
    busy = (t_end.user - t_cpu.user + t_end.system - t_cpu.system) / wall
    return {"calls": results, "cpu_busy": busy}


def worker_main(args: argparse.Namespace) -> None:
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    out = asyncio.run(_worker(args.url, args.calls, args.stagger, args.max_call_s))
    print(json.dumps(out))


# ---- driver -------------------------------------------------------------------------------------
@dataclass
class Step:
    calls: int
    ok_calls: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    underruns: int
    gw_underruns: int
    cpu_per_call_pct: float
    gateway_cpu_pct: float
    rss_per_call_mb: float
    added_p50_ms: float
    added_p99_ms: float
    client_cpu_pct: float
    client_bound: bool

    @property
    def held(self) -> bool:
        return (self.lateness_p99_ms <= 10.0 and self.underruns == 0 and self.ok_calls == self.calls
                and not self.client_bound)


def run_step(gw: Gateway, n: int, workers: Sequence[int | None], speech_s: float, stagger: float,
             rss_base: float) -> Step:
    def scrape() -> str:
        return httpx.get(f"{gw.url}/metrics", timeout=10).text

    before = scrape()
    cpu0, t0 = gw.cpu_s(), time.monotonic()
    shares = [n // len(workers) + (1 if i < n % len(workers) else 0) for i in range(len(workers))]
    procs = []
    for core, share in zip(workers, shares, strict=True):
        if share == 0:
            continue
        cmd = [sys.executable, "-m", "bench.load", "--worker", "--url", gw.url, "--calls", str(share),
               "--stagger", str(stagger), "--max-call-s", str(speech_s + stagger + 30)]
        if core is not None:
            cmd += ["--core", str(core)]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)}))
    peak = gw.rss_mb()
    while any(p.poll() is None for p in procs):
        peak = max(peak, gw.rss_mb())
        time.sleep(0.25)
    wall = time.monotonic() - t0
    cpu = gw.cpu_s() - cpu0
    after = scrape()
    outs = [json.loads(p.communicate()[0]) for p in procs]
    ready = httpx.get(f"{gw.url}/bench/stats", timeout=10).json()["first_ready"]
    calls = [c for o in outs for c in o["calls"]]
    ok = [c for c in calls if "error" not in c and c["marks"] == ["greeting-1"] and not c["errors"]]
    added = [(c["first_media_at"] - ready[c["sid"]]) * 1000 for c in ok
             if c["first_media_at"] is not None and c["sid"] in ready]
    lat = "voicegw_frame_lateness_seconds"
    lat_b, lat_a = histogram(before, lat), histogram(after, lat)
    gw_underruns = counter(after, "voicegw_underruns_total") - counter(before, "voicegw_underruns_total")
    client_underruns = sum(c.get("underruns", 0) for c in calls)
    client_cpu = max(o["cpu_busy"] for o in outs)
    # CPU is averaged over the step; calls overlap for about speech_s of it.
    active_share = min(1.0, (speech_s + 0.3) / wall)
    gateway_cpu = cpu / wall
    return Step(
        calls=n, ok_calls=len(ok),
        lateness_p50_ms=bucket_quantile(lat_b, lat_a, 0.50) * 1000,
        lateness_p99_ms=bucket_quantile(lat_b, lat_a, 0.99) * 1000,
        underruns=int(gw_underruns) + client_underruns, gw_underruns=int(gw_underruns),
        cpu_per_call_pct=100 * gateway_cpu / active_share / n, gateway_cpu_pct=100 * gateway_cpu,
        rss_per_call_mb=(peak - rss_base) / n,
        added_p50_ms=percentile(added, 50), added_p99_ms=percentile(added, 99),
        client_cpu_pct=100 * client_cpu, client_bound=client_cpu > 0.9,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-call-s", type=float, default=60, help=argparse.SUPPRESS)
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="concurrency levels to try, in order")
    parser.add_argument("--speech-s", type=float, default=6.0, help="agent audio per call (seconds)")
    parser.add_argument("--stagger", type=float, default=1.0, help="call starts spread over this many seconds")
    parser.add_argument("--max-seconds", type=float, default=170.0, help="stop ramping after this long")
    parser.add_argument("--workers", type=int, help="caller processes (default: one per core but the gateway's)")
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return

    cores = sorted(os.sched_getaffinity(0))
    gw_core = cores[0] if len(cores) > 1 else None
    others: list[int | None] = [*cores[1:]] or [None]
    n_workers = args.workers or len(others)
    workers = [others[i % len(others)] for i in range(n_workers)]
    print(f"gateway pinned to core {gw_core}; {n_workers} caller process(es) on cores {others}; "
          f"{args.speech_s:g} s of agent audio per call; machine has {os.cpu_count()} cores")
    started = time.monotonic()
    best: Step | None = None
    header = (f"{'calls':>5} {'ok':>5} {'late p50':>8} {'late p99':>8} {'underr (gw)':>11} {'gw cpu':>6} "
              f"{'cpu/call':>8} {'rss/call':>8} {'added p50':>9} {'added p99':>9} {'caller cpu':>10}  result")
    with gateway(args.speech_s, gw_core) as gw:
        for _ in range(2):  # warm-up
            run_step(gw, 2, workers[:1], args.speech_s, 0.1, gw.rss_mb())
        rss_base = gw.rss_mb()
        print(f"gateway RSS after warm-up: {rss_base:.1f} MB")
        print(header)
        for n in (int(x) for x in args.steps.split(",")):
            if time.monotonic() - started > args.max_seconds:
                print(f"(time budget of {args.max_seconds:g} s spent; use --max-seconds to go further)")
                break
            step = run_step(gw, n, workers, args.speech_s, args.stagger, rss_base)
            verdict = "held" if step.held else ("client-bound" if step.client_bound else "FAILED")
            print(f"{step.calls:>5} {step.ok_calls:>5} {step.lateness_p50_ms:>6.2f}ms {step.lateness_p99_ms:>6.2f}ms "
                  f"{step.underruns:>6} ({step.gw_underruns:>2}) {step.gateway_cpu_pct:>5.0f}% "
                  f"{step.cpu_per_call_pct:>7.2f}% "
                  f"{step.rss_per_call_mb:>6.3f}MB {step.added_p50_ms:>7.1f}ms {step.added_p99_ms:>7.1f}ms "
                  f"{step.client_cpu_pct:>9.0f}%  {verdict}", flush=True)
            if not step.held:
                break
            best = step
    if best is None:
        print("load: max_calls_per_core=0 p99_frame_lateness_ms=nan underruns=nan rss_per_call_mb=nan "
              "added_latency_p99_ms=nan")
        return
    print(f"load: max_calls_per_core={best.calls} p99_frame_lateness_ms={best.lateness_p99_ms:.2f} "
          f"underruns={best.underruns} rss_per_call_mb={best.rss_per_call_mb:.3f} "
          f"added_latency_p99_ms={best.added_p99_ms:.1f}")


if __name__ == "__main__":
    main()
