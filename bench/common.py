"""Shared pieces of the load and soak benchmarks: the gateway process, emulated calls, /proc readings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from gateway.serve import free_port
from gateway.twilio.emulator import CallControl, CallResult, TwilioEmulator, parse_stream

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


@contextmanager
def gateway(speech_s: float, core: int | None) -> Iterator[Gateway]:
    """Start bench.gateway_proc (127.0.0.1 only) and wait until it is ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.gateway_proc", "--port", str(port), "--speech-s", str(speech_s)]
    if core is not None:
        cmd += ["--core", str(core)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    gw = Gateway(proc, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("gateway process exited during startup")
            try:
                if httpx.get(f"{gw.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not become ready")
            time.sleep(0.1)
        yield gw
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Placed:
    call_sid: str
    result: CallResult
    first_media_at: float | None  # monotonic time the first outbound media frame arrived here


async def place_call(emu: TwilioEmulator, agent: str, hold_s: float, max_s: float) -> Placed:
    """One emulated call (as TwilioEmulator.call, keeping the call sid and the arrival clock)."""
    twiml, call_sid = await emu.fetch_twiml(agent=agent)
    result = CallResult(twiml=twiml)
    stream = parse_stream(twiml)
    if stream is None:
        result.errors.append("no <Stream> in TwiML")
        return Placed(call_sid, result, None)
    url, params = stream
    async with connect(emu._ws_url(url), max_size=2**20) as ws:
        control = CallControl(ws, emu, result, call_sid, params)
        await control.run(b"", hold_s, max_s, 1, None)
    first = None if result.time_to_first_audio is None else control.t0 + result.time_to_first_audio
    return Placed(call_sid, result, first)


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts {upper bound: count} of a label-less histogram."""
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{name}_bucket":
                out[float(s.labels["le"])] = s.value
    return out


def counter(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and not s.labels:
                return s.value
    return 0.0


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Quantile of the observations made between two scrapes, interpolated within buckets (Prometheus-style)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return 0.0
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_bound, prev_count = bound, count
    return prev_bound


SPEED_PROBE = ("import time\nt = time.perf_counter()\nfor _ in range(30):\n    sum(range(1_000_000))\n"
               "print(time.perf_counter() - t)")


def speed_probe_ms(core: int | None) -> float:
    """How long a fixed Python loop takes on ``core`` now (ms): a VM's speed can swing by half between runs (another
    tenant), more than some changes measured with it, so each step says what the machine was doing."""
    cmd = [sys.executable, "-c", SPEED_PROBE]
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return float(out.strip()) * 1000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
