"""Conversation benchmark over the Twilio emulator with the offline stack (Silero, Whisper tiny.en, Piper).

Run from the repo root: ``.venv/bin/python bench/conversation.py``. The gateway runs in this process under
real uvicorn; the emulated caller speaks every committed fixture (tests/fixtures/speech).

- LLM call (loopback fake OpenAI-compatible server, first token after ~5 ms, every answer a long reply):
  each fixture is spoken 1 s into the previous reply's playback, so it is both a barge-in (stop time =
  Twilio ``clear`` received − caller speech onset) and a question (mouth-to-ear = the reply turn's start
  mark echoed at playout − end of caller speech). The fake server records what the gateway recognised (WER).
- Scripted call (demo agent, phrase cache warm after the first answer): mouth-to-ear for the same fixtures.

Speech onset/end are taken from the fixture audio itself (first/last 10 ms window above -34 dBFS).
The summary line reports the LLM path (uncached synthesis), the conservative one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from audio.codec import ulaw2lin  # noqa: E402
from bench.wer import wer  # noqa: E402
from gateway.twilio.emulator import CallControl, TwilioEmulator  # noqa: E402
from tests.fake_llm import FakeLLM, FakeReply, run_fake_llm  # noqa: E402
from tests.helpers import run_gateway  # noqa: E402
from tests.speech_fixtures import mulaw, transcripts  # noqa: E402

LONG = ("Let me look into that for you. Your account shows two open requests. The first one is about billing, "
        "and the second one is about your address. Both are being handled by our team this week. "
        "You will receive an email when they are done. Is there anything else I can help you with today?")


def speech_bounds(data: bytes) -> tuple[float, float]:
    """(onset, end) of speech in a fixture, seconds: first/last 10 ms window above -34 dBFS."""
    pcm = ulaw2lin(data).astype(np.float64) / 32768
    win = pcm[: len(pcm) // 80 * 80].reshape(-1, 80)
    loud = np.flatnonzero(np.sqrt((win**2).mean(axis=1)) > 0.02)
    return float(loud[0] * 0.01), float((loud[-1] + 1) * 0.01)


@dataclass
class Sample:
    name: str
    mouth_to_ear: float | None = None
    barge_in_stop: float | None = None
    transcript: str = ""


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)


def now(c: CallControl) -> float:
    return c.emu.clock() - c.t0


async def until(cond: object, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def starts(c: CallControl) -> list[str]:
    return [m for m in c.result.marks_echoed if m.startswith("turn") and m.endswith("-start")]


async def idle(c: CallControl) -> None:
    for _ in range(6):
        await until(c.playout.idle)
        await asyncio.sleep(0.05)


async def llm_call(url: str, names: list[str], run: Run) -> None:
    async def caller(c: CallControl) -> None:
        await until(lambda: "greeting-1" in c.result.marks_echoed)
        await idle(c)
        for i, name in enumerate(names):
            data = mulaw(name)
            onset, end = speech_bounds(data)
            sample = Sample(name)
            known = len(starts(c))
            clears = c.result.clears
            t = now(c)
            c.speak(data)
            if i > 0:  # spoken over the previous reply: a barge-in
                if await until(lambda n=clears: c.result.clears > n, 10):
                    sample.barge_in_stop = c.result.clear_times[clears] - (t + onset)
            if await until(lambda k=known: len(starts(c)) > k, 20):
                sample.mouth_to_ear = c.result.mark_times[starts(c)[-1]] - (t + end)
            run.samples.append(sample)
            await asyncio.sleep(1.0)  # the reply is playing: the next fixture interrupts it
        await asyncio.sleep(1.0)

    await TwilioEmulator(url).call(agent="benchllm", script=caller, hold_s=0.1, max_s=600)


async def scripted_call(url: str, names: list[str], run: Run) -> None:
    async def caller(c: CallControl) -> None:
        await until(lambda: "greeting-1" in c.result.marks_echoed)
        await idle(c)
        for name in names:
            data = mulaw(name)
            _, end = speech_bounds(data)
            known = len(starts(c))
            t = now(c)
            c.speak(data)
            sample = Sample(name)
            if await until(lambda k=known: len(starts(c)) > k, 20):
                sample.mouth_to_ear = c.result.mark_times[starts(c)[-1]] - (t + end)
            run.samples.append(sample)
            await idle(c)

    await TwilioEmulator(url).call(agent="demo", script=caller, hold_s=0.1, max_s=600)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level="WARNING")
    refs = transcripts()
    names = list(refs)
    fake = FakeLLM(default=FakeReply(LONG, token_delay_s=0.005))
    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "agents"
        shutil.copytree(ROOT / "config" / "agents", agents)
        llm, scripted = Run(), Run()
        async with run_fake_llm(fake) as llm_url:
            (agents / "benchllm.yaml").write_text(
                f'id: benchllm\nname: Bench\ngreeting: "Hello."\n'
                f'logic: {{kind: llm, base_url: "{llm_url}", model: fake}}\n'
                "tts: {provider: piper, fallback: []}\n"
                "turn_taking: {reprompt_after_s: 60, hangup_after_s: 120}\n"
            )
            async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents)}) as url:
                await llm_call(url, names, llm)
                if not args.skip_scripted:
                    # the scripted demo agent hangs up on "goodbye": speak that one last
                    await scripted_call(url, sorted(names, key=lambda n: n == "goodbye"), scripted)
    heard = [m["content"] for req in fake.requests for m in req["messages"][-1:] if m["role"] == "user"]
    errors = words = 0
    print(f"{'fixture':20s} {'m2e llm ms':>11s} {'m2e script ms':>13s} {'barge stop ms':>13s}  transcript")
    for i, s in enumerate(llm.samples):
        s.transcript = heard[i] if i < len(heard) else ""
        e, n = wer(refs[s.name], s.transcript)
        errors, words = errors + e, words + n
        sc = next((x for x in scripted.samples if x.name == s.name), None)

        def ms(v: float | None) -> str:
            return f"{v * 1000:.0f}" if v is not None else "-"

        print(f"{s.name:20s} {ms(s.mouth_to_ear):>11s} {ms(sc.mouth_to_ear if sc else None):>13s} "
              f"{ms(s.barge_in_stop):>13s}  {s.transcript!r} ({e}/{n} errors)")
    m2e = [s.mouth_to_ear for s in llm.samples if s.mouth_to_ear is not None]
    m2e_s = [s.mouth_to_ear for s in scripted.samples if s.mouth_to_ear is not None]
    barge = [s.barge_in_stop for s in llm.samples if s.barge_in_stop is not None]
    if m2e_s:
        print(f"scripted (cached phrases): mouth_to_ear p50={pct(m2e_s, 50) * 1000:.0f} ms "
              f"p95={pct(m2e_s, 95) * 1000:.0f} ms over {len(m2e_s)}")
    print(f"llm: {len(m2e)}/{len(names)} answered, {len(barge)}/{len(names) - 1} barge-ins detected; "
          f"barge-in stop p95={pct(barge, 95) * 1000:.0f} ms; {len(fake.requests)} LLM requests")
    print(f"conversation: mouth_to_ear_p50_ms={pct(m2e, 50) * 1000:.0f} mouth_to_ear_p95_ms={pct(m2e, 95) * 1000:.0f} "
          f"barge_in_stop_ms={pct(barge, 50) * 1000:.0f} wer={errors / max(1, words):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-scripted", action="store_true", help="only the LLM call")
    asyncio.run(main(parser.parse_args()))
