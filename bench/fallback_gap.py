"""Fallback gap: the silence a TTS fallback causes, per fault, through the real Speaker.

Providers: a scripted "chattts" (faults injected; first audio after 50 ms when
healthy, 100 ms chunks), the real Cartesia SDK over a WebSocket context against
the loopback fake Cartesia server (tests/fake_cartesia.py, first chunk after
``--cartesia-ms``), and the real Piper joe voice. Budget = ``--budget-ms``.

Gap, as the Speaker reports it (``voicegw_tts_fallback_gap_seconds``):
before any audio, sentence start → first audio of the provider that spoke;
mid-sentence, failure (or, for a stall, the end of the audio delivered so far)
→ first audio of the replacement. Each scenario runs ``--n`` sentences.

Run: ``.venv/bin/python -m bench.fallback_gap``. Last line: the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_cartesia import API_KEY, FakeCartesia  # noqa: E402
from tests.fake_engines import Fault, ScriptedEngine  # noqa: E402
from tts.base import TTSEngine  # noqa: E402
from tts.breaker import BreakerPolicy, BreakerRegistry  # noqa: E402
from tts.cartesia import CartesiaEngine  # noqa: E402
from tts.fallback import Speaker, SpeechRestart  # noqa: E402
from tts.piper import PiperEngine  # noqa: E402
from tts.registry import TTSConfig  # noqa: E402

SCENARIOS: dict[str, tuple[Fault, bool]] = {  # name → (chattts fault, cartesia drops mid-context)
    "healthy (no fallback)": (Fault(first_audio_delay=0.05), False),
    "chattts raises before audio": (Fault(raise_before_audio="oom"), False),
    "chattts no audio within budget": (Fault(first_audio_delay=30.0), False),
    "chattts dies mid-sentence": (Fault(first_audio_delay=0.05, die_after=2), False),
    "chattts stalls mid-sentence": (Fault(first_audio_delay=0.05, stall_after=2), False),
    "chattts raises, cartesia drops": (Fault(raise_before_audio="oom"), True),
}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--budget-ms", type=int, default=400)
    ap.add_argument("--cartesia-ms", type=float, default=80.0, help="fake Cartesia time to first chunk")
    args = ap.parse_args()
    fake = FakeCartesia().start()
    piper = PiperEngine()
    await piper.start()
    cartesia = CartesiaEngine(API_KEY, base_url=fake.base_url)
    await cartesia.start()
    config = TTSConfig(provider="chattts", fallback=["cartesia", "piper"], first_audio_budget_ms=args.budget_ms)
    rows = []
    worst_p95 = 0.0
    try:
        for name, (fault, drop) in SCENARIOS.items():
            fake.reset()
            fake.behaviour.first_chunk_delay = args.cartesia_ms / 1000
            fake.behaviour.chunk_delay = 0.02
            fake.behaviour.audio_bytes = 8000
            fake.behaviour.disconnect_after_chunks = 2 if drop else None
            engines: dict[str, TTSEngine] = {
                "chattts": ScriptedEngine("chattts", chunks=10, chunk_delay=0.02, default=fault),
                "cartesia": cartesia, "piper": piper,
            }
            # Breakers off for the bench: every sentence exercises the fault.
            speaker = Speaker(engines, config, breakers=BreakerRegistry(BreakerPolicy(failure_threshold=10**6)))
            restarts = 0
            for i in range(args.n):
                async for part in speaker.speak(f"Sentence {i} of the benchmark.", turn_id=f"t{i}"):
                    restarts += isinstance(part, SpeechRestart)
            reports = list(speaker.reports)
            gaps = [r.gap_s * 1000 for r in reports]
            first = [r.first_audio_s * 1000 for r in reports]
            spoke = statistics.mode(r.provider for r in reports)
            rows.append((name, spoke, restarts, statistics.median(first), statistics.median(gaps), pct(gaps, 0.95)))
            if "healthy" not in name:
                worst_p95 = max(worst_p95, pct(gaps, 0.95))
    finally:
        await cartesia.aclose()
        await piper.aclose()
        fake.stop()
    print(f"{'scenario':34} {'spoke':9} {'restarts':>8} {'first p50 ms':>12} {'gap p50 ms':>10} {'gap p95 ms':>10}")
    for name, spoke, restarts, f50, g50, g95 in rows:
        print(f"{name:34} {spoke:9} {restarts:>8} {f50:>12.0f} {g50:>10.0f} {g95:>10.0f}")
    print(f"fallback_gap: n={args.n} budget_ms={args.budget_ms} cartesia_first_chunk_ms={args.cartesia_ms:.0f} "
          f"worst_gap_p95_ms={worst_p95:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
