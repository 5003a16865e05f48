"""ChatTTS cross-call micro-batching: 8 concurrent sentences, sequential vs through the batching worker.

A random-weight checkpoint is built in a temporary directory (``--geometry tiny``: the test model,
≈3 MB; ``--geometry full``: the real geometry, ≈1.2 GB, random weights, so speed is real and sound is
noise) and loaded through the production engine (sha256 override = the built files' hashes). Every
sentence is exactly ``--tokens`` audio tokens (Tuning.fixed_tokens), so both modes do the same work:

- sequential: the 8 sentences one after another (each its own batch of 1);
- batched: the 8 sentences submitted at once from 8 coroutines, as 8 calls would.

Throughput is audio tokens generated per wall-clock second (46.9 tokens/s = real time for one call).
Runs on CUDA when available (``--device auto``), else CPU with one torch thread.

Run: ``.venv/bin/python bench/chattts_batching.py [--geometry tiny|full] [--tokens N] [--device D]``.
The last line is the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chattts_fixture import build_checkpoint  # noqa: E402
from tts.base import SynthesisRequest  # noqa: E402
from tts.chattts import ChatTTSConfig, ChatTTSEngine  # noqa: E402
from tts.chattts_worker import SAMPLE_RATE, Tuning  # noqa: E402
from tts.settings import ChatTTSVoice  # noqa: E402

SENTENCES = [
    "Hello, thanks for calling.", "Your order has shipped.", "It will arrive on Tuesday.",
    "Is there anything else?", "Please hold for a moment.", "I can help with that.",
    "Your balance is five dollars.", "Have a great day.",
]
VOICES = ["female_1", "male_1", "neutral_1", "female_2", "male_2", "neutral_2", "female_3", "male_3"]


async def _one(engine: ChatTTSEngine, i: int) -> tuple[float, float, int]:
    """(time to first audio, total time, samples) for sentence i."""
    t0 = time.perf_counter()
    first: float | None = None
    samples = 0
    req = SynthesisRequest(SENTENCES[i], settings=ChatTTSVoice(voice=VOICES[i], seed=i),  # type: ignore[arg-type]
                           priority=0)
    async for chunk in engine.synthesize(req):
        first = first if first is not None else time.perf_counter() - t0
        samples += chunk.num_samples
    return first or 0.0, time.perf_counter() - t0, samples


async def _run(engine: ChatTTSEngine, concurrent: bool) -> tuple[float, list[tuple[float, float, int]]]:
    t0 = time.perf_counter()
    if concurrent:
        results = list(await asyncio.gather(*(_one(engine, i) for i in range(len(SENTENCES)))))
    else:
        results = [await _one(engine, i) for i in range(len(SENTENCES))]
    return time.perf_counter() - t0, results


async def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--geometry", choices=["tiny", "full"], default="tiny")
    p.add_argument("--tokens", type=int, default=None, help="audio tokens per sentence (default 96; full on CPU 48)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--rounds", type=int, default=2, help="repeat each mode; the best round is reported")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*past_key_values.*", category=FutureWarning)

    with tempfile.TemporaryDirectory(prefix="chattts-bench-") as tmp:
        t0 = time.perf_counter()
        ckpt = build_checkpoint(Path(tmp), geometry=args.geometry)
        build_s = time.perf_counter() - t0
        tokens = args.tokens
        engine = ChatTTSEngine(ChatTTSConfig(
            model_dir=ckpt.path, device=args.device, sha256_override=ckpt.sha256,
            tuning=Tuning(fixed_tokens=tokens or 96, max_batch=8, batch_window_s=0.02),
        ))
        t0 = time.perf_counter()
        await engine.start()
        if not engine.ready:
            print(f"engine failed to load: {engine.load_error}", file=sys.stderr)
            return 1
        load_s = time.perf_counter() - t0
        if tokens is None and args.geometry == "full" and engine.device == "cpu":
            await engine.aclose()  # full geometry on CPU: shorter sentences keep the run to a few minutes
            tokens = 48
            engine = ChatTTSEngine(ChatTTSConfig(
                model_dir=ckpt.path, device="cpu", sha256_override=ckpt.sha256,
                tuning=Tuning(fixed_tokens=tokens, max_batch=8, batch_window_s=0.02)))
            await engine.start()
        tokens = tokens or 96
        print(f"checkpoint {args.geometry}: built in {build_s:.1f}s, loaded+warmed in {load_s:.1f}s "
              f"on {engine.device}; {len(SENTENCES)} sentences x {tokens} tokens "
              f"({tokens * 512 / SAMPLE_RATE:.2f}s audio each)")
        rows: dict[str, dict[str, float | str]] = {}
        for mode, concurrent in (("sequential", False), ("batched", True)):
            best: tuple[float, list[tuple[float, float, int]]] | None = None
            for _ in range(args.rounds):
                before = len(engine.stats.batch_sizes)
                wall, res = await _run(engine, concurrent)
                sizes = engine.stats.batch_sizes[before:]
                if best is None or wall < best[0]:
                    best, best_sizes = (wall, res), sizes
            assert best is not None
            wall, res = best
            audio_s = sum(r[2] for r in res) / SAMPLE_RATE
            rows[mode] = {
                "wall": wall, "tok_s": len(res) * tokens / wall, "rtf": wall / audio_s,
                "ttfa_mean": statistics.mean(r[0] for r in res), "ttfa_max": max(r[0] for r in res),
                "batches": "+".join(map(str, best_sizes)),
            }
        await engine.aclose()

    print(f"{'mode':<11} {'wall s':>8} {'tok/s':>8} {'RTF':>6} {'ttfa mean':>10} {'ttfa max':>9}  batches")
    for mode, r in rows.items():
        print(f"{mode:<11} {r['wall']:>8.2f} {r['tok_s']:>8.1f} {r['rtf']:>6.2f} {r['ttfa_mean']:>10.3f} "
              f"{r['ttfa_max']:>9.3f}  {r['batches']}")
    seq, bat = float(rows["sequential"]["tok_s"]), float(rows["batched"]["tok_s"])
    print(f"chattts_batching: geometry={args.geometry} device={engine.device} sequential_tok_s={seq:.1f} "
          f"batched_tok_s={bat:.1f} speedup={bat / seq:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
