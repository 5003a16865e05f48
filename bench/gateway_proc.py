"""The gateway under test for bench/load.py and bench/soak.py.

Two configurations:

* ``--agents-dir DIR`` (bench/load.py's default): the **production** startup (``build_services``:
  the YAML agents of DIR, the offline Piper voice, the shared VAD and recognizer, readiness waiting
  for all of it) under uvicorn exactly as ``voicegw serve`` runs it. ``--listen off`` removes the VAD
  and recognizer after startup (the media-only figure).
* otherwise (bench/soak.py): one agent ``bench`` whose TTS is :class:`SyntheticVoice`: speech-like
  24 kHz float32 audio produced instantly, so the gateway's media path (not TTS) is what gets
  measured. The 24 kHz float source goes through the same soxr resampler and mu-law encoder as
  ChatTTS audio would.

``BENCH_GC_FREEZE=0`` (experiment): without the startup heap freeze ``voicegw serve`` does once startup settled.
``BENCH_STALLS=FILE`` (experiment): what holds the event loop for over 10 ms (``BENCH_STALLS_MS``; :mod:`bench.stalls`).
``VOICEGW_PLAYOUT_LEAD_MS`` / ``VOICEGW_PLAYOUT_FRAMES_PER_WRITE`` pass through (pacing experiments).
``BENCH_CPROFILE=FILE`` (experiment): cProfile of the whole run, written when the driver stops the gateway.
``BENCH_GC_THRESHOLD=N`` or ``=a,b,c`` (experiment): collector thresholds (N, 50, 100) or (a, b, c) instead of
``voicegw serve``'s.
``BENCH_GC_LOG=1`` (experiment): every collector pause over 4 ms on stderr, with what it walked (:class:`GcPauses`).
``BENCH_LOOP=asyncio`` / ``BENCH_HTTP=h11`` (experiments): uvicorn's other event loop / HTTP parser instead of
uvloop / httptools (what ``voicegw serve`` gets with ``uvicorn[standard]``).
``BENCH_WS=asgi`` (experiment): uvicorn's plain WebSocket protocol, every message through ASGI's queue (no
direct lane, no hot path: :mod:`gateway.direct_ws`).

One extra route, ``GET /bench/stats``, reports the process's asyncio task count, the event loop
class, the batched VAD's counters when there is one, (production) the collector's pauses since the last
report and the objects it tracks (``BENCH_GC_TYPES=1``: the commonest types, and one timed full collection),
and (synthetic voice) per call sid the monotonic
time its first sentence's audio was ready (``time.monotonic`` is CLOCK_MONOTONIC, shared by processes
on one Linux host, so the load driver can subtract its own arrival times).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import uvicorn

from agents.spec import AgentSpec
from agents.store import MemoryStore
from audio.formats import AudioChunk, AudioFormat, Encoding
from gateway.app import create_app
from gateway.ops import logs
from gateway.ops.drain import Drain
from gateway.serve import uvicorn_options
from gateway.services import Services
from gateway.settings import Settings
from gateway.startup import build_services, settle_collector, settle_startup
from tts.base import SynthesisRequest

RATE = 24000
CHUNK_S = 0.25


def speech_like(seconds: float) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Voiced syllables: a 120 Hz harmonic series under a 4 Hz envelope, with short pauses."""
    t = np.arange(int(seconds * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    return (0.25 * voice * envelope).astype(np.float32)


class SyntheticVoice:
    """A TTSEngine that yields ``seconds`` of speech-like audio per sentence, immediately."""

    name = "piper"  # stands in for the agent's provider
    ready = True

    def __init__(self, seconds: float) -> None:
        audio = speech_like(seconds)
        fmt = AudioFormat(Encoding.PCM_F32, RATE)
        step = int(CHUNK_S * RATE)
        self.chunks = [AudioChunk(audio[i : i + step].copy(), fmt) for i in range(0, len(audio), step)]
        self.first_ready: dict[str, float] = {}

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        sid = logs.call_sid.get()
        for i, chunk in enumerate(self.chunks):
            if i == 0 and sid and sid not in self.first_ready:
                self.first_ready[sid] = time.monotonic()
            yield chunk
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        return None


def bench_agent(limit: int = 10000) -> AgentSpec:
    return AgentSpec.model_validate({
        "id": "bench", "name": "Benchmark", "phone_numbers": ["+15005550199"],
        "greeting": "This is the benchmark greeting.",
        "logic": {"kind": "scripted"},
        "tts": {"provider": "piper", "fallback": []},
        "limits": {"max_concurrent_calls": limit, "max_call_seconds": 3600},
    })


def vad_stats(services: Services) -> dict[str, float]:
    listening = services.listening
    if listening is None or listening.vad is None:
        return {}
    batchers = listening.vad.batchers()  # one per event loop (one here)
    return {"runs": sum(b.runs for b in batchers), "chunks": sum(b.chunks for b in batchers),
            "skipped": sum(b.skipped for b in batchers), "busy_s": sum(b.busy_s for b in batchers)}


_background: set[asyncio.Task[None]] = set()  # keeps the freezing task referenced


def experiment_thresholds(value: str) -> tuple[int, int, int]:
    """``BENCH_GC_THRESHOLD``: ``N`` (the young threshold, then 50 and 100) or all three, ``a,b,c``."""
    parts = [int(p) for p in value.split(",")]
    return (parts[0], 50, 100) if len(parts) == 1 else (parts[0], parts[1], parts[2])


class GcPauses:
    """The collector's pauses per generation (count, total and longest ms) since the last :meth:`take`.

    ``log_over_ms`` (``BENCH_GC_LOG=1``: 4 ms; an experiment, it costs a pass over the young generations per
    collection): each longer pause goes to stderr with the sizes of the generations it walked, and the first
    young or middle collection over 20,000 objects also with their commonest types and examples — what stays
    alive in the young generations (found so: a backlog of handoff tuples, :mod:`gateway.direct_ws`)."""

    def __init__(self, log_over_ms: float | None = None) -> None:
        self._started = 0.0
        self._by_gen: dict[int, list[float]] = {}
        self._log_over_ms = log_over_ms
        self._sizes: list[int] = []
        self._described = False
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if self._log_over_ms is not None:
                self._look(info["generation"])
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000
        if self._log_over_ms is not None and ms > self._log_over_ms:
            print(f"gc pause: generation {info['generation']}, {ms:.1f} ms, {info['collected']} collected, "
                  f"generation sizes {self._sizes}", file=sys.stderr, flush=True)
        entry = self._by_gen.setdefault(info["generation"], [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += ms
        entry[2] = max(entry[2], ms)

    def _look(self, generation: int) -> None:
        self._sizes = [len(gc.get_objects(k)) for k in range(generation + 1)]
        if generation == 2 or self._described or max(self._sizes) <= 20_000:
            return
        self._described = True
        objects = gc.get_objects(max(range(generation + 1), key=lambda k: self._sizes[k]))
        kinds = collections.Counter(type(o).__name__ for o in objects)
        commonest = kinds.most_common(1)[0][0]
        examples = [repr(o)[:160] for o in objects if type(o).__name__ == commonest][:3]
        print(f"gc young generation: {kinds.most_common(12)}; e.g. {examples}", file=sys.stderr, flush=True)

    def take(self) -> dict[int, list[float]]:
        out, self._by_gen = self._by_gen, {}
        return out


def build_production(agents_dir: str, listen: bool) -> Any:
    """The app as ``voicegw serve`` builds it (services built here so --listen off can take listening away)."""
    playout = {k: v for k, v in os.environ.items() if k.startswith("VOICEGW_PLAYOUT_")}  # pacing experiments
    settings = Settings.from_env({"VOICEGW_LOG_LEVEL": "WARNING", "VOICEGW_AGENTS_DIR": agents_dir,
                                  "VOICEGW_DRAIN_TIMEOUT_S": "5", **playout})
    holder: dict[str, Services] = {}
    pauses = GcPauses(4.0 if os.environ.get("BENCH_GC_LOG") == "1" else None)  # reported by /bench/stats

    async def lifespan_services() -> Services:
        services = await build_services(settings)
        if not listen and services.listening is not None:
            stt = services.listening.stt
            # (no event to wait on: the recognizer only exposes flags; its load would eat into the calls)
            while stt is not None and not stt.ready and not stt.load_error:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            services.listening = None  # calls get no VAD and no recognizer: the media path alone
        if os.environ.get("BENCH_STALLS"):
            from bench import stalls

            stalls.start(asyncio.get_running_loop(), os.environ["BENCH_STALLS"],
                         float(os.environ.get("BENCH_STALLS_MS", "10")) / 1000)
        if os.environ.get("BENCH_GC_FREEZE") != "0":  # as GatewayServer does (0: the experiment without it)
            async def freeze_when_settled() -> None:
                while not settle_startup(services):  # noqa: ASYNC110 - flags only, as GatewayServer.on_tick
                    await asyncio.sleep(0.1)
                if os.environ.get("BENCH_GC_THRESHOLD"):  # the experiment's thresholds, not serve's
                    gc.set_threshold(*experiment_thresholds(os.environ["BENCH_GC_THRESHOLD"]))

            services.settling = True  # from now, as GatewayServer's first tick does
            _background.add(asyncio.create_task(freeze_when_settled()))
        holder["services"] = services
        return services

    inner: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            services = await lifespan_services()
            inner["app"] = create_app(settings, services)
            try:
                await inner["app"](scope, receive, send)
            finally:
                await services.aclose()
            return
        if scope["type"] == "http" and scope["path"] == "/bench/stats":
            services = holder["services"]
            stats = {"tasks": len(asyncio.all_tasks()), "active_calls": services.active_calls,
                     "loop": type(asyncio.get_running_loop()).__module__, "vad": vad_stats(services),
                     "gc_tracked": len(gc.get_objects()), "gc": pauses.take()}
            if os.environ.get("BENCH_GC_TYPES") == "1":  # experiment: the most common objects a full collection walks
                kinds: dict[str, int] = {}
                for obj in gc.get_objects():
                    kinds[type(obj).__name__] = kinds.get(type(obj).__name__, 0) + 1
                stats["gc_types"] = sorted(kinds.items(), key=lambda kv: -kv[1])[:25]
                t0 = time.perf_counter()
                gc.collect()
                stats["gc_full_ms"] = (time.perf_counter() - t0) * 1000
            body = json.dumps(stats).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await inner["app"](scope, receive, send)

    return app


def build(speech_s: float) -> tuple[Any, SyntheticVoice]:
    settings = Settings.from_env({"VOICEGW_LOG_LEVEL": "WARNING"})
    voice = SyntheticVoice(speech_s)
    agent = bench_agent()
    services = Services(settings=settings, store=MemoryStore({agent.id: agent}), drain=Drain(5.0))
    services.engines["piper"] = voice
    app = create_app(settings, services)

    snapshots: list[tracemalloc.Snapshot] = []
    if os.environ.get("BENCH_TRACEMALLOC") == "1":
        tracemalloc.start(8)

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/stats":
            gc.collect()
            stats: dict[str, Any] = {
                "tasks": len(asyncio.all_tasks()),
                "active_calls": services.active_calls,
                "first_ready": voice.first_ready,
            }
            if tracemalloc.is_tracing():  # BENCH_TRACEMALLOC=1: top growth since the previous call
                kinds: dict[str, int] = {}
                for obj in gc.get_objects():
                    kinds[type(obj).__name__] = kinds.get(type(obj).__name__, 0) + 1
                stats["objects"] = {k: kinds.get(k, 0) for k in ("CallSession", "ToTwilio", "ResampleStream",
                                                                  "WebSocket", "Outbound", "Task")}
                snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
                if snapshots:
                    top = snap.compare_to(snapshots[-1], "lineno")[:8]
                    stats["growth"] = [str(t) for t in top]
                snapshots[:] = [snap]
            body = json.dumps(stats).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped, voice


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--core", type=int, help="pin this process to one CPU core")
    parser.add_argument("--speech-s", type=float, default=6.0, help="seconds of audio per sentence")
    parser.add_argument("--agents-dir", help="production startup with the YAML agents of this directory")
    parser.add_argument("--listen", choices=["on", "off"], default="on", help="off: no VAD/STT (media only)")
    parser.add_argument("--nice", type=int, default=0, help="scheduling priority change (negative: higher)")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    if args.nice:
        os.nice(args.nice)
    logs.configure("WARNING")
    if os.environ.get("BENCH_GC_THRESHOLD"):  # experiment: e.g. 50000 (CPython's default gen0 threshold is 700)
        gc.freeze()
        gc.set_threshold(*experiment_thresholds(os.environ["BENCH_GC_THRESHOLD"]))
    app = build_production(args.agents_dir, args.listen == "on") if args.agents_dir else build(args.speech_s)[0]
    if not args.agents_dir and os.environ.get("BENCH_GC_FREEZE") != "0" and not os.environ.get("BENCH_GC_THRESHOLD"):
        settle_collector()  # the collector as serve leaves it once startup settled
    options = uvicorn_options(Settings())
    if os.environ.get("BENCH_WS") == "asgi":  # experiment: uvicorn's plain protocol (every message through ASGI)
        options["ws"] = "websockets-sansio"
    if os.environ.get("BENCH_LOOP"):  # experiment: asyncio (the standard library's loop) instead of uvloop
        options["loop"] = os.environ["BENCH_LOOP"]
    if os.environ.get("BENCH_HTTP"):  # experiment: h11 instead of httptools (webhooks, WebSocket handshakes)
        options["http"] = os.environ["BENCH_HTTP"]
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on",
                            access_log=False, **options)
    if os.environ.get("BENCH_CPROFILE"):  # experiment: a deterministic profile of the whole run (about 2x slower)
        import cProfile
        import signal

        profiler = cProfile.Profile()

        def dump(*_: Any) -> None:
            profiler.disable()
            profiler.dump_stats(os.environ["BENCH_CPROFILE"])
            os._exit(0)

        signal.signal(signal.SIGTERM, dump)
        profiler.enable()
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
