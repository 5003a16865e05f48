"""The remote ChatTTS hop: added time to first audio on loopback, bytes per call, and the gap when the pod dies.

A speech pod (``bench.speech_proc``: voicegw in the speech role, the real ChatTTS engine on a random-weight
checkpoint built by tests/chattts_fixture.py, every sentence ``--tokens`` audio tokens) runs as its own
process; this process talks to it through the real remote engine (``tts.chattts_remote``: httpx keep-alive
pool, streamed PCM).

* **Added first audio** per sentence = time to the first chunk as the telephony side sees it (from
  ``synthesize()`` to the first ``AudioChunk``: text normalization, JSON, HTTP on loopback, the server's
  parsing and validation, PCM conversion, chunked transfer, parsing) minus the speech server's own time to
  first audio for that sentence (its ``X-First-Audio-Ms``: engine submit → first chunk, the same work an
  in-process engine does). ``--n`` sentences one after another on warm connections.
* Cross-check: the same engine loaded in this process, time to first audio p50 (``--local``; it loads a
  second copy of the model here).
* **Bytes per call**: request + response bytes for a 4-sentence call (greeting and three reply sentences).
* **Fallback gap**: a sentence of 3000 tokens streams from a second pod, which is SIGKILLed at its first
  audio; the Speaker (chain chattts → Piper, the real Piper voice) restarts the sentence on Piper; the gap is
  the Speaker's own figure (failure → first audio of the replacement). ``--kills`` times. The budget is large
  (``--budget-ms`` 2000) so that a loaded machine's slow first chunk does not hedge to Piper before the kill.

Run: ``.venv/bin/python -m bench.remote_tts`` (about a minute; noisy on a shared machine). Last line: summary.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chattts_fixture import build_checkpoint  # noqa: E402
from tests.split_procs import speech_pod  # noqa: E402
from tts.base import SynthesisRequest, TTSEngine  # noqa: E402
from tts.breaker import BreakerPolicy, BreakerRegistry  # noqa: E402
from tts.chattts_remote import RemoteChatTTSEngine, RemoteConfig  # noqa: E402
from tts.fallback import Speaker, SpeechRestart  # noqa: E402
from tts.registry import TTSConfig  # noqa: E402
from tts.settings import ChatTTSVoice  # noqa: E402

SENTENCES = ["Hello, and thanks for calling.", "We are open from nine to five.", "Monday to Friday.",
             "Is there anything else I can help with?"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def first_audio(engine: TTSEngine, text: str) -> tuple[float, int]:
    """Seconds to the first chunk, and samples in all."""
    t0 = time.monotonic()
    first = None
    samples = 0
    async for chunk in engine.synthesize(SynthesisRequest(text, settings=ChatTTSVoice(seed=1))):
        if first is None:
            first = time.monotonic() - t0
        samples += chunk.num_samples
    assert first is not None
    return first, samples


async def hop(url: str, n: int) -> tuple[list[float], list[float], int, float]:
    eng = RemoteChatTTSEngine(RemoteConfig(url=url, health_interval_s=600))
    await eng.start()
    try:
        await first_audio(eng, "Warm up.")  # opens the keep-alive connection
        client_ms, added_ms = [], []
        for i in range(n):
            first, _ = await first_audio(eng, SENTENCES[i % len(SENTENCES)])
            server = eng.stats.last_server_first_audio_ms
            assert server is not None, "the speech server did not report its own first audio"
            client_ms.append(first * 1000)
            added_ms.append(first * 1000 - server)
        before = eng.stats.bytes_sent + eng.stats.bytes_received
        audio = 0
        for text in SENTENCES:  # one call's worth
            audio += (await first_audio(eng, text))[1]
        per_call = eng.stats.bytes_sent + eng.stats.bytes_received - before
        return client_ms, added_ms, per_call, audio / 24000
    finally:
        await eng.aclose()


async def local_first_audio(ckpt_dir: Path, sha: dict[str, str], tokens: int, n: int) -> list[float]:
    from tts.chattts import ChatTTSConfig, ChatTTSEngine
    from tts.chattts_worker import Tuning

    eng = ChatTTSEngine(ChatTTSConfig(model_dir=ckpt_dir, device="cpu", sha256_override=sha,
                                      tuning=Tuning(fixed_tokens=tokens)))
    await eng.start()
    try:
        await first_audio(eng, "Warm up.")
        return [(await first_audio(eng, SENTENCES[i % len(SENTENCES)]))[0] * 1000 for i in range(n)]
    finally:
        await eng.aclose()


KILLED = "This sentence is cut when its speech pod dies."


async def killed_gap(url: str, kill: object, budget_ms: int) -> tuple[float, str, float]:
    from tts.piper import PiperEngine

    piper = PiperEngine()
    await piper.start()
    _ = [c async for c in piper.synthesize(SynthesisRequest("Warm up the voice."))]  # first inference is slow
    piper_first = (await first_audio(piper, KILLED))[0] * 1000  # what the gap cannot be shorter than
    eng = RemoteChatTTSEngine(RemoteConfig(url=url, health_interval_s=600), name="chattts")
    await eng.start()
    try:
        speaker = Speaker({"chattts": eng, "piper": piper},
                          TTSConfig(provider="chattts", fallback=["piper"], first_audio_budget_ms=budget_ms),
                          breakers=BreakerRegistry(BreakerPolicy(failure_threshold=10**6)))
        killed = False
        async for part in speaker.speak(KILLED):
            if not killed and not isinstance(part, SpeechRestart):
                assert callable(kill)
                kill()
                killed = True
        report = speaker.reports[-1]
        return report.gap_s * 1000, report.provider, piper_first
    finally:
        await eng.aclose()
        await piper.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30, help="sentences for the latency figures")
    ap.add_argument("--tokens", type=int, default=48, help="audio tokens per sentence (48 ≈ 1 s)")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--budget-ms", type=int, default=2000,
                    help="first-audio budget: large, so that the kill (not a hedge) decides who speaks")
    ap.add_argument("--local", action="store_true", help="also time the same engine in this process")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = build_checkpoint(folder / "ckpt")
        with speech_pod(ckpt, folder, fixed_tokens=args.tokens) as pod:
            client_ms, added_ms, per_call, call_audio_s = await hop(pod.url, args.n)
        local_ms = await local_first_audio(ckpt.path, ckpt.sha256, args.tokens, args.n) if args.local else []
        gaps: list[float] = []
        piper_ms: list[float] = []
        for _ in range(args.kills):
            with speech_pod(ckpt, folder, fixed_tokens=3000) as pod:
                gap, provider, piper_first = await killed_gap(pod.url, pod.kill, args.budget_ms)
            assert provider == "piper", provider
            gaps.append(gap)
            piper_ms.append(piper_first)
    server_ms = [c - a for c, a in zip(client_ms, added_ms, strict=True)]
    rows = [
        ("first audio at the client (ms)", pct(client_ms, 0.5), pct(client_ms, 0.95)),
        ("first audio in the speech server's engine (ms)", pct(server_ms, 0.5), pct(server_ms, 0.95)),
        ("added by the hop (ms)", pct(added_ms, 0.5), pct(added_ms, 0.95)),
    ]
    if local_ms:
        rows.append(("cross-check: same engine in process (ms)", pct(local_ms, 0.5), pct(local_ms, 0.95)))
    rows.append(("gap when the pod is killed mid-sentence, to Piper (ms)", statistics.median(gaps), max(gaps)))
    rows.append(("  of which Piper's own first audio for that sentence (ms)", statistics.median(piper_ms),
                 max(piper_ms)))
    print(f"\n{'measure':58} {'p50':>9} {'p95/max':>9}")
    for name, p50, p95 in rows:
        print(f"{name:58} {p50:9.2f} {p95:9.2f}")
    print(f"bytes per call ({len(SENTENCES)} sentences, {call_audio_s:.1f} s of audio, streamed s16le 24 kHz): "
          f"{per_call} ({per_call / call_audio_s / 1000:.1f} kB per second of speech)")
    print(f"remote_tts: added_first_audio_ms_p50={pct(added_ms, 0.5):.2f} "
          f"added_first_audio_ms_p95={pct(added_ms, 0.95):.2f} fallback_gap_ms={statistics.median(gaps):.0f} "
          f"bytes_per_call={per_call}")


if __name__ == "__main__":
    asyncio.run(main())
