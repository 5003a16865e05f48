"""Load benchmark: how many concurrent *listening* calls one gateway core carries from a cold start.

Production configuration by default: the gateway (bench.gateway_proc with ``--agents-dir``) starts as
``voicegw serve`` does, on a real YAML agent (config/agents/demo.yaml: scripted, the offline Piper voice,
its concurrency limit raised for the benchmark), with the shared Silero VAD and the recognizer loaded,
pinned to one core. Every step starts a **fresh** gateway (cold start: nothing synthesized yet, the
first calls arrive as soon as /readyz says ready) and places N calls over --stagger seconds from caller
processes on the other core(s). Each caller behaves like a Twilio leg: webhook, stream, 20 ms inbound
frames of an **idle phone line** (low noise and 60 Hz hum; ``--inbound speech`` makes --talk-share of
the callers say a fixture sentence after the greeting; ``--inbound silence`` sends digital silence),
playout in real time with mark echoes, for --call-s seconds.

A step holds when the gateway's p99 frame lateness is at most 10 ms, no underrun appears (gateway or
caller side), every call was placed and heard its whole greeting (mark ``greeting-1`` echoed). A step
the driver could not drive (a caller process above 90 % CPU, or its event loop waking more than 20 ms
late at p99) is ``client-bound``: it is never reported as held and the ramp stops. The ramp
stops at the first step that does not hold (``not-held``), when --max-seconds is spent (``time``) or
when the steps run out (``steps``). ``--listen both`` (default) ramps listening calls, then media-only
calls (VAD and recognizer removed: ``--listen off``).

    python -m bench.load [--listen both|on|off] [--steps 100,200,300,...] [--call-s 20] [--stagger 5]
Last line:
    load: max_calls_per_core=<n> media_only_max_calls_per_core=<m> p99_frame_lateness_ms=<x>
          underruns=<u> rss_per_call_mb=<r> vad_us_per_call_s=<v> stop=<reason>   (one line)
The figures after the two maxima describe the highest held listening step (media-only if not measured).

Columns besides pass/fail: gateway CPU per call-second (``ms/call·s``: per second of stream the callers actually
had, from ``start`` to the end of the stream, so calls the agent ends early are not counted at --call-s) and the
calls per core it projects
(``proj/core``; independent of other load on the machine, unlike lateness), VAD CPU per call-second, the
batcher's mean batch and the share of chunks its pre-gate skipped, RSS at ready and per call, time to first
audio, the driver's CPU and event-loop lag, and the gateway's startup time. Above each row: the garbage
collector's pauses during the step (count and longest per generation: a full collection holds the loop, and so
every call's audio, for as long as it walks the live calls' objects) and how many objects it tracks at the end;
before each step, how long a fixed Python loop took on the gateway's core (``machine:``): the speed of a shared VM
swings between runs, and a slow moment fails a step the same code holds on a quiet one.
``--profile DIR`` writes a py-spy
profile of each step's steady state (``python -m bench.profile_summary FILE`` summarizes it); ``--nice -10``
raises the gateway's and callers' priority on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from audio.codec import lin2ulaw, ulaw2lin
from bench.callers import CLOSE_TIMEOUT_S, Script, Ticker, one_call
from bench.common import ROOT, Gateway, bucket_quantile, counter, histogram, percentile, speed_probe_ms
from gateway.serve import free_port

DEFAULT_STEPS = "100,200,300,400,500,600,800"
AGENT_YAML = ROOT / "config" / "agents" / "demo.yaml"
SPEECH_FIXTURE = ROOT / "tests" / "fixtures" / "speech" / "hours.ul"
FRAME = 160
LOOP_S = 10.0  # idle-line noise loop per caller process (each call starts at a random offset)


# ---- caller audio -------------------------------------------------------------------------------
def idle_line(seconds: float, seed: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A quiet PSTN leg: white noise at about -55 dBFS and 60 Hz mains hum at about -46 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 8000)) / 8000
    return rng.normal(0, 0.0018, len(t)) + 0.005 * np.sin(2 * np.pi * 60 * t + rng.uniform(0, 6.28))


def frames_b64(signal: np.ndarray[Any, Any]) -> list[str]:
    pcm = (np.clip(signal, -1, 1) * 32767).astype(np.int16)
    ulaw = lin2ulaw(pcm)
    return [base64.b64encode(ulaw[i : i + FRAME]).decode() for i in range(0, len(ulaw) - FRAME + 1, FRAME)]


def caller_audio(inbound: str, seed: int) -> tuple[list[str], list[str]]:
    """(idle frames to loop, speech frames said once after the greeting) as base64 payloads."""
    if inbound == "silence":
        return [base64.b64encode(bytes([0xFF]) * FRAME).decode()], []
    noise = idle_line(LOOP_S, seed)
    speech: list[str] = []
    if inbound == "speech":
        said = ulaw2lin(SPEECH_FIXTURE.read_bytes()).astype(np.float64) / 32768
        speech = frames_b64(said + idle_line(len(said) / 8000, seed + 1))
    return frames_b64(noise), speech


# ---- worker: emulated Twilio callers (bench/callers.py) ---------------------------------------------
async def _loop_lag(out: list[float], period_s: float = 0.01) -> None:
    """How late this process's event loop wakes up: the driver's own health, whatever the gateway does.

    (The lateness of the callers' sends is not used for that: a gateway that stops reading makes
    the callers' sends wait on TCP backpressure, which is the gateway's fault, not the driver's.)
    """
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(period_s)
        out.append(loop.time() - t - period_s)


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    idle, speech = caller_audio(args.inbound, args.seed)
    script = Script(idle, speech, args.call_s)
    rng = random.Random(args.seed)
    t_cpu, started = os.times(), time.monotonic()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    ticker = Ticker(asyncio.get_running_loop().time)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        talkers = round(args.calls * args.talk_share) if speech else 0
        calls = [one_call(client, args.url, args.to, script, i < talkers, args.stagger, random.Random(rng.random()),
                          ticker) for i in range(args.calls)]
        loop_lags: list[float] = []
        monitor = asyncio.create_task(_loop_lag(loop_lags))
        pacing = asyncio.create_task(ticker.run())
        results = await asyncio.gather(*calls)
        monitor.cancel()
        pacing.cancel()
    wall = time.monotonic() - started
    t_end = os.times()
    busy = (t_end.user - t_cpu.user + t_end.system - t_cpu.system) / wall
    lags = ticker.lags
    return {"cpu_busy": busy, "lag_p99_s": float(np.percentile(loop_lags, 99)) if loop_lags else 0.0,
            "send_lag_p99_s": float(np.percentile(lags, 99)) if lags else 0.0,
            "calls": [vars(r) for r in results]}


def worker_main(args: argparse.Namespace) -> None:
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    if args.nice:
        os.nice(args.nice)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    print(json.dumps(runner(_worker(args)), allow_nan=True))


# ---- driver -------------------------------------------------------------------------------------
def bench_agents_dir(tmp: Path) -> tuple[Path, str]:
    """config/agents/demo.yaml as operators ship it, its concurrency limit raised for the benchmark."""
    spec = yaml.safe_load(AGENT_YAML.read_text())
    spec["limits"]["max_concurrent_calls"] = 10000
    (tmp / "demo.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp, spec["phone_numbers"][0]


@contextlib.contextmanager
def production_gateway(agents_dir: Path, core: int | None, listen: bool, nice: int = 0
                       ) -> Iterator[tuple[Gateway, float]]:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.gateway_proc", "--port", str(port), "--agents-dir", str(agents_dir),
           "--listen", "on" if listen else "off", "--nice", str(nice)]
    if core is not None:
        cmd += ["--core", str(core)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    gw = Gateway(proc, f"http://127.0.0.1:{port}")
    try:
        deadline = t0 + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError("gateway process exited during startup")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{gw.url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not become ready in 180 s")
            time.sleep(0.05)
        yield gw, time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Step:
    calls: int
    placed: int
    greetings: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    underruns: int
    gw_underruns: int
    gateway_cpu_pct: float
    rss_base_mb: float
    rss_per_call_mb: float
    ttfa_p50_ms: float
    ttfa_p99_ms: float
    client_cpu_pct: float
    driver_lag_p99_ms: float
    vad_us_per_call_s: float
    vad_batch: float
    vad_skipped_pct: float
    cpu_ms_per_call_s: float  # gateway CPU per second of call, whatever the contention
    startup_s: float

    @property
    def projected_calls_per_core(self) -> float:
        """At this cost, how many calls would fill one whole core (a projection, not a held step)."""
        return 1000.0 / self.cpu_ms_per_call_s if self.cpu_ms_per_call_s > 0 else math.nan

    @property
    def client_bound(self) -> bool:
        return self.client_cpu_pct > 90 or self.driver_lag_p99_ms > 20

    def failures(self) -> list[str]:
        out = []
        if self.placed < self.calls:
            out.append(f"{self.calls - self.placed} calls not placed")
        if self.greetings < self.calls:
            out.append(f"{self.calls - self.greetings} greetings not heard")
        if self.underruns:
            out.append(f"{self.underruns} underruns")
        if self.lateness_p99_ms > 10.0:
            out.append(f"p99 lateness {self.lateness_p99_ms:.1f} ms")
        return out

    @property
    def held(self) -> bool:
        return not self.failures() and not self.client_bound


def run_step(agents_dir: Path, to: str, n: int, gw_core: int | None, workers: Sequence[int | None],
             args: argparse.Namespace, listen: bool, step_no: int) -> Step:
    print(f"  machine: a fixed Python loop on the gateway's core took {speed_probe_ms(gw_core):.0f} ms", flush=True)
    with production_gateway(agents_dir, gw_core, listen, args.nice) as (gw, startup_s):
        def scrape() -> str:
            return httpx.get(f"{gw.url}/metrics", timeout=60).text

        rss_base = gw.rss_mb()
        before = scrape()
        vad0 = httpx.get(f"{gw.url}/bench/stats", timeout=60).json()["vad"]
        cpu0, t0 = gw.cpu_s(), time.monotonic()
        shares = [n // len(workers) + (1 if i < n % len(workers) else 0) for i in range(len(workers))]
        procs = []
        results = []  # each worker's JSON goes to a file: through a pipe read only at the end, a worker whose
        # report outgrew the pipe's 64 KB (about 200 calls) blocked in print() and the step never ended
        for i, (core, share) in enumerate(zip(workers, shares, strict=True)):
            if share == 0:
                continue
            cmd = [sys.executable, "-m", "bench.load", "--worker", "--url", gw.url, "--calls", str(share),
                   "--to", to, "--stagger", str(args.stagger), "--call-s", str(args.call_s),
                   "--inbound", args.inbound, "--talk-share", str(args.talk_share), "--seed", str(1000 * step_no + i),
                   "--nice", str(args.nice)]
            if core is not None:
                cmd += ["--core", str(core)]
            results.append(tempfile.TemporaryFile())  # noqa: SIM115 - closed after the step, below
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=results[-1],
                                          env={**os.environ, "PYTHONPATH": str(ROOT)}))
        profiler = None
        # Profile the steady state: from the moment every call has heard its greeting to the end of the calls;
        # or the arrival: from the first call to the last greeting's end.
        if args.profile_phase == "arrival":
            prof_at, prof_s = t0, int(args.stagger + 8.0)
        else:
            prof_at, prof_s = t0 + args.stagger + 8.0, int(args.call_s - args.stagger - 8.0)
        peak = gw.rss_mb()
        while any(p.poll() is None for p in procs):
            peak = max(peak, gw.rss_mb())
            if args.profile and profiler is None and time.monotonic() >= prof_at and prof_s >= 2:
                phase = "-arrival" if args.profile_phase == "arrival" else ""
                prof_out = Path(args.profile) / f"{'listen' if listen else 'media'}-{n}{phase}.txt"
                prof_out.parent.mkdir(parents=True, exist_ok=True)
                profiler = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(gw.proc.pid),
                     "--duration", str(prof_s), "--rate", "200", "--format", "raw", "--output", str(prof_out),
                     "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.25)
        wall = time.monotonic() - t0
        cpu = gw.cpu_s() - cpu0
        after = scrape()
        stats1 = httpx.get(f"{gw.url}/bench/stats", timeout=60).json()
        vad1 = stats1["vad"]
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)
    outs = []
    for p, result in zip(procs, results, strict=True):
        p.wait()
        result.seek(0)
        outs.append(json.loads(result.read()))
        result.close()
    calls = [c for o in outs for c in o["calls"]]
    placed = [c for c in calls if not c["error"]]
    ttfa = [c["ttfa_s"] * 1000 for c in placed if not math.isnan(c["ttfa_s"])]
    lat = "voicegw_frame_lateness_seconds"
    lat_b, lat_a = histogram(before, lat), histogram(after, lat)
    gw_underruns = int(counter(after, "voicegw_underruns_total") - counter(before, "voicegw_underruns_total"))
    lag_p99 = max(o["lag_p99_s"] for o in outs)  # the worst caller process's event-loop lag
    chunks = vad1.get("chunks", 0) - vad0.get("chunks", 0)
    runs = vad1.get("runs", 0) - vad0.get("runs", 0)
    busy = vad1.get("busy_s", 0.0) - vad0.get("busy_s", 0.0)
    skipped = vad1.get("skipped", 0) - vad0.get("skipped", 0)
    pauses = {int(gen): v for gen, v in stats1.get("gc", {}).items()}  # since the step's first stats read
    if pauses:  # the collector holds the loop: a long pause makes every call's frames late at once
        print("  gc pauses: " + "; ".join(f"gen {gen} x{int(v[0])} longest {v[2]:.1f} ms"
                                          for gen, v in sorted(pauses.items()))
              + f"; {stats1.get('gc_tracked', 0)} objects tracked at the end; event loop {stats1.get('loop')}",
              flush=True)
    talkers = [c for c in placed if c["talked"]]
    if talkers:  # an answer heard before the idle reprompt could come (8 s after the greeting) = heard and answered
        answered = sum(1 for c in talkers if c["next_mark_s"] < 7.5)
        print(f"  callers who talked: {len(talkers)}; answered before a reprompt could come: {answered}", flush=True)
    closes = [c["close_s"] * 1000 for c in placed if not math.isnan(c["close_s"])]
    aborted = sum(1 for c in placed if c["close_aborted"])
    if closes or aborted:  # the gateway's side of hanging up: stop/close frame → TCP connection closed
        print(f"  teardown: closed by the gateway p50 {percentile(closes, 50):.0f} ms, p99 "
              f"{percentile(closes, 99):.0f} ms; not closed within {CLOSE_TIMEOUT_S:g} s (aborted): {aborted}",
              flush=True)
    streamed = sum(c["streamed_s"] for c in placed)  # the call-seconds the gateway actually carried
    cut = sum(1 for c in placed if c["streamed_s"] < args.call_s - 1.0)
    if cut:  # the agent hung up first (the demo agent's goodbye comes 20 s after its last words)
        print(f"  {cut} calls ended by the agent before --call-s: {streamed / max(1, len(placed)):.1f} s streamed "
              f"per call on average; CPU per call-second counts what was streamed", flush=True)
    errors = sorted({c["error"] for c in calls if c["error"]})
    if errors:
        print(f"  call errors ({len(calls) - len(placed)}): {'; '.join(errors[:3])}", flush=True)
    return Step(
        calls=n, placed=len(placed), greetings=sum(1 for c in placed if c["greeting"]),
        lateness_p50_ms=bucket_quantile(lat_b, lat_a, 0.50) * 1000,
        lateness_p99_ms=bucket_quantile(lat_b, lat_a, 0.99) * 1000,
        underruns=gw_underruns + sum(c["underruns"] for c in calls), gw_underruns=gw_underruns,
        gateway_cpu_pct=100 * cpu / wall, rss_base_mb=rss_base, rss_per_call_mb=(peak - rss_base) / n,
        ttfa_p50_ms=percentile(ttfa, 50), ttfa_p99_ms=percentile(ttfa, 99),
        client_cpu_pct=100 * max(o["cpu_busy"] for o in outs), driver_lag_p99_ms=1000 * lag_p99,
        vad_us_per_call_s=(busy * 1e6 / ((chunks + skipped) * 256 / 8000)) if chunks + skipped else math.nan,
        vad_batch=chunks / runs if runs else math.nan,
        vad_skipped_pct=100 * skipped / (skipped + chunks) if skipped + chunks else math.nan,
        cpu_ms_per_call_s=1000 * cpu / (streamed or n * args.call_s), startup_s=startup_s,
    )


HEADER = (f"{'calls':>5} {'ok':>4} {'greet':>5} {'late p50':>8} {'late p99':>8} {'underr (gw)':>11} {'gw cpu':>6} "
          f"{'rss0':>5} {'rss/call':>8} {'ttfa p50':>8} {'ttfa p99':>8} {'vad µs/s':>8} {'batch':>5} {'gated':>5} "
          f"{'ms/call·s':>9} {'proj/core':>9} "
          f"{'drv cpu':>7} {'drv lag':>7} {'start':>5}  result")


def ramp(agents_dir: Path, to: str, gw_core: int | None, workers: Sequence[int | None], args: argparse.Namespace,
         listen: bool, deadline: float) -> tuple[Step | None, str]:
    print(f"-- {'listening calls (VAD + STT loaded)' if listen else 'media only (--listen off)'}, "
          f"inbound {args.inbound}, {args.call_s:g} s per call, starts over {args.stagger:g} s, cold start per step")
    print(HEADER, flush=True)
    best: Step | None = None
    for i, n in enumerate(int(x) for x in args.steps.split(",")):
        if time.monotonic() > deadline:
            return best, "time"
        step = run_step(agents_dir, to, n, gw_core, workers, args, listen, i)
        verdict = "held" if step.held else ("client-bound" if step.client_bound else
                                            "FAILED: " + ", ".join(step.failures()))
        print(f"{step.calls:>5} {step.placed:>4} {step.greetings:>5} {step.lateness_p50_ms:>6.2f}ms "
              f"{step.lateness_p99_ms:>6.2f}ms {step.underruns:>6} ({step.gw_underruns:>2}) "
              f"{step.gateway_cpu_pct:>5.0f}% {step.rss_base_mb:>5.0f} {step.rss_per_call_mb:>6.3f}MB "
              f"{step.ttfa_p50_ms:>6.0f}ms {step.ttfa_p99_ms:>6.0f}ms {step.vad_us_per_call_s:>8.0f} "
              f"{step.vad_batch:>5.0f} {step.vad_skipped_pct:>4.0f}% {step.cpu_ms_per_call_s:>9.2f} "
              f"{step.projected_calls_per_core:>9.0f} {step.client_cpu_pct:>6.0f}% {step.driver_lag_p99_ms:>5.1f}ms "
              f"{step.startup_s:>4.1f}s  {verdict}", flush=True)
        if step.client_bound:
            return best, "client-bound"
        if not step.held:
            return best, "not-held"
        best = step
    return best, "steps"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--to", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--listen", choices=["both", "on", "off"], default="both",
                        help="on: listening calls (VAD + STT); off: media only; both (default): on, then off")
    parser.add_argument("--inbound", choices=["noise", "speech", "silence"], default="noise",
                        help="what callers send: idle-line noise (default), noise plus a sentence, digital silence")
    parser.add_argument("--talk-share", type=float, default=0.2,
                        help="with --inbound speech: share of callers who talk")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="concurrency levels to try, in order")
    parser.add_argument("--call-s", type=float, default=20.0, help="length of each call (seconds)")
    parser.add_argument("--stagger", type=float, default=5.0, help="call starts spread over this many seconds")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop ramping after this long")
    parser.add_argument("--workers", type=int, help="caller processes (default: one per core but the gateway's)")
    parser.add_argument("--profile", help="directory: py-spy raw profile of the gateway during each step")
    parser.add_argument("--profile-phase", choices=["steady", "arrival"], default="steady",
                        help="what --profile records: after every greeting (default), or the arrival and greetings")
    parser.add_argument("--nice", type=int, default=0,
                        help="priority change for the gateway and callers (e.g. -10 on a machine shared with others)")
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
          f"machine has {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    deadline = time.monotonic() + args.max_seconds
    results: dict[bool, tuple[Step | None, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        agents_dir, to = bench_agents_dir(Path(tmp))
        for listen in ([True, False] if args.listen == "both" else [args.listen == "on"]):
            results[listen] = ramp(agents_dir, to, gw_core, workers, args, listen, deadline)
    listening, listen_stop = results.get(True, (None, ""))
    media, media_stop = results.get(False, (None, ""))
    shown = listening if True in results else media
    stop = listen_stop if True in results else media_stop
    if True in results and False in results:
        print(f"listening ramp stopped: {listen_stop}; media-only ramp stopped: {media_stop}")

    def num(step: Step | None, present: bool) -> str:
        return str(step.calls if step else 0) if present else "nan"

    nan = math.nan
    print(f"load: max_calls_per_core={num(listening, True in results)} "
          f"media_only_max_calls_per_core={num(media, False in results)} "
          f"p99_frame_lateness_ms={shown.lateness_p99_ms if shown else nan:.2f} "
          f"underruns={shown.underruns if shown else 'nan'} "
          f"rss_per_call_mb={shown.rss_per_call_mb if shown else nan:.3f} "
          f"vad_us_per_call_s={shown.vad_us_per_call_s if shown else nan:.0f} stop={stop}")


if __name__ == "__main__":
    main()
