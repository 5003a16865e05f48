"""ChatTTS cross-call micro-batching: 8 concurrent sentences, sequential vs through the batching worker.

A random-weight checkpoint is built in a temporary directory (``--geometry tiny``: the test model,
≈3 MB; ``--geometry full``: the real geometry, ≈1.2 GB, random weights, so speed is real and sound is
noise) and loaded through the production engine (sha256 override = the built files' hashes). The 8
sentences have mixed lengths (from "Yes." to a long explanation; seeded, so every mode does the same work);
``--tokens N`` makes every sentence exactly N audio tokens instead (Tuning.fixed_tokens):

- sequential: the 8 sentences one after another (each its own batch of 1);
- batched: the 8 sentences submitted at once from 8 coroutines, as 8 calls would (batch window 20 ms);
- batched_no_window: the same with ``batch_window_s=0``: what the window itself buys.

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
#: Mixed lengths (the default): a call's sentences range from "Yes." to a long explanation, and a batch runs
#: until its longest row ends, so uniform sentences flatter batching.
MIXED = [
    "Yes.", "Your order has shipped and it will arrive on Tuesday.", "Okay.",
    "I can help with that, but first I need to confirm your account number and the address on file.",
    "Sure.", "Please hold for a moment while I look that up.", "Thanks.",
    "Your balance is five dollars.",
]
TEXTS = list(MIXED)
VOICES = ["female_1", "male_1", "neutral_1", "female_2", "male_2", "neutral_2", "female_3", "male_3"]


async def _one(engine: ChatTTSEngine, i: int) -> tuple[float, float, int]:
    """(time to first audio, total time, samples) for sentence i."""
    t0 = time.perf_counter()
    first: float | None = None
    samples = 0
    req = SynthesisRequest(TEXTS[i], settings=ChatTTSVoice(voice=VOICES[i], seed=i),  # type: ignore[arg-type]
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


async def _engine(ckpt: object, device: str, tokens: int | None, window_s: float) -> ChatTTSEngine:
    engine = ChatTTSEngine(ChatTTSConfig(
        model_dir=ckpt.path, device=device, sha256_override=ckpt.sha256,  # type: ignore[attr-defined]
        tuning=Tuning(fixed_tokens=tokens, max_batch=8, batch_window_s=window_s),
    ))
    await engine.start()
    return engine


async def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--geometry", choices=["tiny", "full"], default="tiny")
    p.add_argument("--tokens", type=int, default=None,
                   help="uniform sentences of exactly this many audio tokens (default: mixed sentence lengths, "
                        "each as long as the model makes it, at most 64 + 16 per character)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--rounds", type=int, default=2, help="repeat each mode; the best round is reported")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*past_key_values.*", category=FutureWarning)

    with tempfile.TemporaryDirectory(prefix="chattts-bench-") as tmp:
        t0 = time.perf_counter()
        ckpt = build_checkpoint(Path(tmp), geometry=args.geometry)
        build_s = time.perf_counter() - t0
        tokens = args.tokens
        if tokens is not None:
            TEXTS[:] = SENTENCES
        t0 = time.perf_counter()
        engine = await _engine(ckpt, args.device, tokens, 0.02)
        if not engine.ready:
            print(f"engine failed to load: {engine.load_error}", file=sys.stderr)
            return 1
        load_s = time.perf_counter() - t0
        shape = f"{tokens} tokens each" if tokens else "mixed lengths"
        print(f"checkpoint {args.geometry}: built in {build_s:.1f}s, loaded+warmed in {load_s:.1f}s "
              f"on {engine.device}; {len(TEXTS)} sentences, {shape}")
        rows: dict[str, dict[str, float | str]] = {}
        # batched_no_window: the same concurrent submissions with batch_window_s=0 (no waiting for company).
        for mode, concurrent in (("sequential", False), ("batched", True), ("batched_no_window", True)):
            if mode == "batched_no_window":
                await engine.aclose()
                engine = await _engine(ckpt, args.device, tokens, 0.0)
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
            made = sum(r[2] for r in res) / 512  # audio tokens actually generated (512 samples each)
            rows[mode] = {
                "wall": wall, "tok_s": made / wall, "rtf": wall / audio_s,
                "ttfa_mean": statistics.mean(r[0] for r in res), "ttfa_max": max(r[0] for r in res),
                "batches": "+".join(map(str, best_sizes)),
            }
        await engine.aclose()

    print(f"{'mode':<18} {'wall s':>8} {'tok/s':>8} {'RTF':>6} {'ttfa mean':>10} {'ttfa max':>9}  batches")
    for mode, r in rows.items():
        print(f"{mode:<18} {r['wall']:>8.2f} {r['tok_s']:>8.1f} {r['rtf']:>6.2f} {r['ttfa_mean']:>10.3f} "
              f"{r['ttfa_max']:>9.3f}  {r['batches']}")
    seq, bat = float(rows["sequential"]["tok_s"]), float(rows["batched"]["tok_s"])
    nowin = float(rows["batched_no_window"]["tok_s"])
    print(f"chattts_batching: geometry={args.geometry} device={engine.device} "
          f"sentences={'uniform' if args.tokens else 'mixed'} sequential_tok_s={seq:.1f} batched_tok_s={bat:.1f} "
          f"no_window_tok_s={nowin:.1f} speedup={bat / seq:.2f} window_gain={bat / nowin:.2f} "
          f"ttfa_max_s={float(rows['batched']['ttfa_max']):.3f} no_window_ttfa_max_s="
          f"{float(rows['batched_no_window']['ttfa_max']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
