"""Conversation benchmark on realistic caller audio, over the Twilio emulator with the offline stack.

Run from the repo root: ``HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/conversation.py``.
The gateway runs in this process under real uvicorn (Silero VAD, Whisper tiny.en, Piper joe); the emulated
caller speaks the committed realistic fixtures (tests/fixtures/conversation: line noise + mains hum at 25–30 dB
SNR, three utterances with a 0.8–1.0 s pause mid-sentence, a cough), and between utterances the line carries
the same noise (never digital silence).

Scripted call (a bench agent whose answers are fixed phrases; a first, unmeasured call asks every question once so
the phrase cache holds them, as pre-rendering at startup would) — the summary line:
- a cough 0.8 s into the greeting: the greeting must still be heard in full (``lost_greetings``);
- every fixture spoken after the agent went quiet: mouth-to-ear = the reply turn's start mark echoed at playout
  − end of the caller's speech in the fixture; a reply turn that starts before the fixture's speech ended, or a
  second reply to one fixture, is a *premature turn end* (a pausing caller cut off);
- three barge-ins: a fixture spoken 1 s into a long answer; stop = the moment agent audio stopped playing at
  the caller − speech onset;
- a cough 1 s into a long answer: a false barge-in unless every sentence of that answer is heard in full.
  Over either cough the agent may *pause* (its unplayed audio cleared at the caller the moment the VAD hears
  an onset) and must then resume from where the caller stopped hearing it: every mark the pause cleared has
  to be heard afterwards, or the cough counts as a false barge-in. Pauses are counted (``noise_pauses``).
LLM call (loopback fake OpenAI-compatible server, long replies, each fixture spoken 1 s into the previous
reply: a barge-in and a question), reported on its own ``llm:`` line.
WER counts what the gateway recognised (its "caller said" log lines) against the fixture texts.

Speech onset/end come from the fixture audio itself (first/last 10 ms window above -34 dBFS).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from audio.codec import ulaw2lin  # noqa: E402
from bench.wer import wer  # noqa: E402
from gateway.twilio.emulator import CallControl, TwilioEmulator  # noqa: E402
from tests.fake_llm import FakeLLM, FakeReply, run_fake_llm  # noqa: E402
from tests.helpers import run_gateway  # noqa: E402
from tests.speech_fixtures import conversation_fixtures, conversation_mulaw  # noqa: E402

LONG = ("Let me look into that for you. Your account shows two open requests. The first one is about billing, "
        "and the second one is about your address. Both are being handled by our team this week. "
        "You will receive an email when they are done. Is there anything else I can help you with today?")
LONG_ANSWER = ("We are open from nine to five, Monday to Friday, and from ten to two on Saturdays. "
               "On public holidays we are closed, but you can still leave a message. "
               "Our support line answers emails within one working day.")
SCRIPTED = f"""id: benchscript
name: Bench scripted
greeting: "Hello, and thanks for calling. Ask me about our hours, your account, or an appointment."
logic:
  kind: scripted
  rules:
    - when: ["saturday", "open", "opening", "hours"]
      say: "{LONG_ANSWER}"
    - when: ["human", "agent", "person"]
      say: "Of course. Let me find someone who can help you."
    - when: ["refund", "order"]
      say: "I can help with your refund. It will reach your card within five days."
    - when: ["office", "where", "address"]
      say: "We are at one hundred Main Street, Springfield."
    - when: ["account"]
      say: "Thank you. I have found your account."
    - when: ["option", "second"]
      say: "Sorry about that. The second option it is."
    - when: ["appointment"]
      say: "Your appointment is now at three thirty."
    - when: ["bill", "stop", "wait", "question"]
      say: "Sure, what would you like to know about your bill?"
tts: {{provider: piper, fallback: []}}
turn_taking: {{reprompt_after_s: 60, hangup_after_s: 120@EXTRA@}}
"""
QUESTIONS = ["hours", "human", "refund_pause", "address", "account_pause", "second_option", "appointment_pause",
             "opening"]
BARGE_INS = [("opening", "interrupt"), ("hours", "second_option"), ("opening", "human")]  # (long answer, over it)


def speech_bounds(data: bytes) -> tuple[float, float]:
    """(onset, end) of speech in a fixture, seconds: first/last 10 ms window above -34 dBFS."""
    pcm = ulaw2lin(data).astype(np.float64) / 32768
    win = pcm[: len(pcm) // 80 * 80].reshape(-1, 80)
    loud = np.flatnonzero(np.sqrt((win**2).mean(axis=1)) > 0.02)
    return float(loud[0] * 0.01), float((loud[-1] + 1) * 0.01)


@dataclass
class Stats:
    mouth_to_ear: dict[str, list[float]] = field(default_factory=dict)
    barge_in_stop: list[float] = field(default_factory=list)
    barge_ins_missed: int = 0
    premature: int = 0
    false_barge_ins: int = 0
    noise_pauses: int = 0  # the agent paused over a noise burst and resumed (nothing lost)
    lost_greetings: int = 0
    unanswered: int = 0

    def m2e(self) -> list[float]:
        return [v for vs in self.mouth_to_ear.values() for v in vs]


class HeardLog(logging.Handler):
    """What the gateway recognised: its "caller said" lines, in order."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.said: list[str] = []
        self.summaries: list[str] = []  # the gateway's call summary lines (per-turn latency medians)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "voicegw.call" and record.getMessage().startswith("call summary"):
            self.summaries.append(record.getMessage())
            return
        if record.msg.startswith("caller said") and record.args:
            quoted = str(record.args[0])  # type: ignore[index]
            self.said.append(str(ast.literal_eval(quoted)) if quoted[:1] in "'\"" else quoted)


def now(c: CallControl) -> float:
    return c.emu.clock() - c.t0


async def until(cond: Callable[[], bool], within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def starts(c: CallControl) -> list[str]:
    return [m for m in c.result.marks_echoed if m.startswith("turn") and m.endswith("-start")]


class Line:
    """Keeps the caller's line noisy between utterances (the tail of a fixture, looped)."""

    def __init__(self, c: CallControl) -> None:
        tail = conversation_mulaw("address")
        self.noise = tail[-8000:]  # the last second: line noise + hum, no speech
        self.c = c
        self.busy_until = 0.0  # the previous utterance is still being spoken until then (its own tail included)

    async def run(self) -> None:
        while True:
            if len(self.c.inbound) < 1600:
                self.c.inbound.extend(self.noise)
            await asyncio.sleep(0.05)

    async def speak(self, data: bytes) -> float:
        """After the previous utterance has been spoken in full, replace the queued line noise by ``data`` (it
        starts with its own noise lead); returns its start time."""
        await asyncio.sleep(max(0.0, self.busy_until - now(self.c)))
        del self.c.inbound[:]
        self.c.speak(data)
        start = now(self.c)
        self.busy_until = start + len(data) / 8000
        return start


async def after_noise(c: CallControl, before: tuple[int, int], spoken_s: float, stats: Stats, what: str) -> None:
    """Noise was spoken over the agent (``spoken_s`` of it; ``before``: marks cleared and clears before it): once
    it is over, whatever a pause for it cleared must be heard (resumed where the caller stopped hearing)."""
    await asyncio.sleep(spoken_s)
    cleared, clears = before

    def taken() -> list[str]:
        return c.result.marks_cleared[cleared:]

    resumed = await until(lambda: all(m in c.result.marks_echoed for m in taken()), 10)
    if c.result.clears > clears:  # a pause clears the caller's buffer, whether or not a mark was in it
        stats.noise_pauses += 1
    if not resumed:
        stats.false_barge_ins += 1
        print(f"  false barge-in on {what}: never heard {[m for m in taken() if m not in c.result.marks_echoed]}")


async def quiet(c: CallControl, hold_s: float = 0.6) -> None:
    """The agent's audio has finished playing and nothing more came for ``hold_s`` (sentence gaps are shorter)."""
    since = time.monotonic()
    while time.monotonic() - since < hold_s:
        if not c.playout.idle():
            await until(c.playout.idle)
            since = time.monotonic()
        await asyncio.sleep(0.02)


async def audio_stops(c: CallControl, after: float) -> float | None:
    """When agent audio stopped playing at the caller (first moment after ``after`` with nothing buffered)."""
    if not await until(lambda: now(c) > after and c.playout.unplayed_seconds() == 0, 10):
        return None
    return c.playout.play_end - c.t0 if c.playout.play_end - c.t0 > after else now(c)


async def question(c: CallControl, line: Line, name: str, stats: Stats) -> None:
    data = conversation_mulaw(name)
    onset, end = speech_bounds(data)
    known = len(starts(c))
    t = await line.speak(data)
    stopped = t + end
    if await until(lambda: len(starts(c)) > known, 20):
        first = c.result.mark_times[starts(c)[known]]
        if first < stopped:
            stats.premature += 1
            print(f"  premature: {name} answered {stopped - first:.2f}s before the caller finished")
        else:
            stats.mouth_to_ear.setdefault(name, []).append(first - stopped)
    else:
        stats.unanswered += 1
    await quiet(c)
    extra = len(starts(c)) - known - 1
    if extra > 0:
        stats.premature += extra
        print(f"  premature: {name} got {extra + 1} replies")


async def scripted_call(url: str, stats: Stats) -> None:
    async def caller(c: CallControl) -> None:
        line = Line(c)
        noise = asyncio.create_task(line.run())
        try:
            await until(lambda: c.result.time_to_first_audio is not None)
            await asyncio.sleep(0.8)
            before = len(c.result.marks_cleared), c.result.clears
            cough = conversation_mulaw("cough")
            await line.speak(cough)  # a noise burst over the greeting
            await after_noise(c, before, len(cough) / 8000, stats, "a cough over the greeting")
            if not await until(lambda: "greeting-1" in c.result.marks_echoed, 30):
                stats.lost_greetings += 1
            await quiet(c)
            for name in QUESTIONS:
                await question(c, line, name, stats)
            for long_q, over in BARGE_INS:
                await barge_in(c, line, long_q, over, stats)
            # a cough 1 s into a long answer: nothing may be lost
            known = len(starts(c))
            await line.speak(conversation_mulaw("hours"))
            await until(lambda: len(starts(c)) > known, 20)
            await asyncio.sleep(1.0)
            before = len(c.result.marks_cleared), c.result.clears
            cough = conversation_mulaw("cough")
            await line.speak(cough)
            await after_noise(c, before, len(cough) / 8000, stats, "a cough over an answer")
            await quiet(c)
        finally:
            noise.cancel()

    await TwilioEmulator(url).call(agent="benchscript", script=caller, hold_s=0.1, max_s=900)


async def warm_call(url: str) -> None:
    """Every scripted answer once, so its sentences come from the phrase cache in the measured call."""
    async def caller(c: CallControl) -> None:
        line = Line(c)
        noise = asyncio.create_task(line.run())
        try:
            await until(lambda: "greeting-1" in c.result.marks_echoed)
            await quiet(c)
            for name in [*QUESTIONS, "interrupt"]:
                known = len(starts(c))
                await line.speak(conversation_mulaw(name))
                await until(lambda k=known: len(starts(c)) > k, 20)  # type: ignore[misc]
                await quiet(c)
        finally:
            noise.cancel()

    await TwilioEmulator(url).call(agent="benchscript", script=caller, hold_s=0.1, max_s=900)


async def barge_in(c: CallControl, line: Line, long_q: str, over: str, stats: Stats) -> None:
    known = len(starts(c))
    await line.speak(conversation_mulaw(long_q))
    await until(lambda: len(starts(c)) > known, 20)
    await asyncio.sleep(1.0)
    data = conversation_mulaw(over)
    onset, end = speech_bounds(data)
    t = await line.speak(data)
    stop = await audio_stops(c, t + onset)
    if stop is None:
        stats.barge_ins_missed += 1
    else:
        stats.barge_in_stop.append(stop - (t + onset))
    known = len(starts(c))
    if await until(lambda: len(starts(c)) > known, 20):
        first = c.result.mark_times[starts(c)[known]]
        if first >= t + end:
            stats.mouth_to_ear.setdefault(f"{over} (barge-in)", []).append(first - (t + end))
        else:
            stats.premature += 1
    else:
        stats.unanswered += 1
    await quiet(c)


async def llm_call(url: str, stats: Stats) -> None:
    async def caller(c: CallControl) -> None:
        line = Line(c)
        noise = asyncio.create_task(line.run())
        try:
            await until(lambda: "greeting-1" in c.result.marks_echoed)
            await quiet(c)
            for i, name in enumerate(QUESTIONS):
                data = conversation_mulaw(name)
                onset, end = speech_bounds(data)
                known = len(starts(c))
                t = await line.speak(data)
                if i > 0:  # spoken over the previous reply: a barge-in
                    stop = await audio_stops(c, t + onset)
                    if stop is None:
                        stats.barge_ins_missed += 1
                    else:
                        stats.barge_in_stop.append(stop - (t + onset))
                if await until(lambda k=known: len(starts(c)) > k, 20):  # type: ignore[misc]
                    first = c.result.mark_times[starts(c)[known]]
                    if first < t + end:
                        stats.premature += 1
                    else:
                        stats.mouth_to_ear.setdefault(name, []).append(first - (t + end))
                else:
                    stats.unanswered += 1
                await asyncio.sleep(1.0)  # the reply is playing: the next fixture interrupts it
            await asyncio.sleep(1.0)
        finally:
            noise.cancel()

    await TwilioEmulator(url).call(agent="benchllm", script=caller, hold_s=0.1, max_s=900)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def word_errors(said: list[str], names: list[str]) -> tuple[int, int]:
    """Align each fixture with the recognised line that best matches it (order kept, extras ignored)."""
    refs = conversation_fixtures()
    errors = words = 0
    pos = 0
    for name in names:
        ref = str(refs[name]["text"])
        best: tuple[int, int] | None = None
        for j in range(pos, min(len(said), pos + 3)):
            e, n = wer(ref, said[j])
            if best is None or e < best[0]:
                best = (e, j)
        n = len(ref.split())
        if best is None:
            errors, words = errors + n, words + n
            continue
        errors, words, pos = errors + best[0], words + n, best[1] + 1
    return errors, words


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if (await client.get(f"{url}/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.2)


def report(label: str, stats: Stats) -> None:
    for name, values in stats.mouth_to_ear.items():
        print(f"  {label} {name:28s} mouth_to_ear {' '.join(f'{v * 1000:.0f}' for v in values)} ms")
    print(f"  {label} barge-in stop ms: {' '.join(f'{v * 1000:.0f}' for v in stats.barge_in_stop)}"
          f" (missed {stats.barge_ins_missed})")


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level="WARNING")
    heard = HeardLog()
    conv_log = logging.getLogger("voicegw.conversation")
    conv_log.setLevel(logging.INFO)
    conv_log.addHandler(heard)
    call_log = logging.getLogger("voicegw.call")
    call_log.setLevel(logging.INFO)
    call_log.addHandler(heard)
    fake = FakeLLM(default=FakeReply(LONG, token_delay_s=0.005))
    scripted, llm = Stats(), Stats()
    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "agents"
        shutil.copytree(ROOT / "config" / "agents", agents)
        extra = f", end_of_utterance_silence_ms: {args.eou_ms}" if args.eou_ms else ""
        (agents / "benchscript.yaml").write_text(SCRIPTED.replace("@EXTRA@", extra))
        async with run_fake_llm(fake) as llm_url:
            (agents / "benchllm.yaml").write_text(
                f'id: benchllm\nname: Bench\ngreeting: "Hello."\n'
                f'logic: {{kind: llm, base_url: "{llm_url}", model: fake}}\n'
                "tts: {provider: piper, fallback: []}\n"
                "turn_taking: {reprompt_after_s: 60, hangup_after_s: 120}\n"
            )
            async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents), "VOICEGW_LOG_TRANSCRIPTS": "1"}) as url:
                await wait_ready(url)
                if not args.no_warm:
                    await warm_call(url)
                warm_lines = len(heard.said)
                await scripted_call(url, scripted)
                said_scripted = heard.said[warm_lines:]
                if not args.skip_llm:
                    await llm_call(url, llm)
    e, n = word_errors(said_scripted, QUESTIONS + [name for pair in BARGE_INS for name in pair])
    for line in heard.summaries:  # warm-up, scripted, LLM call
        print("  gateway " + " ".join(f for f in line.split() if f.startswith(("turns=", "turn_ms_p50="))))
    report("scripted", scripted)
    m2e = scripted.m2e()
    print(f"scripted: {len(m2e)} answers, {scripted.unanswered} unanswered, lost_greetings={scripted.lost_greetings}, "
          f"false_barge_ins={scripted.false_barge_ins}, noise_pauses={scripted.noise_pauses} (resumed), "
          f"premature={scripted.premature}, recognised {len(said_scripted)}"
          f" lines, {e}/{n} word errors")
    if not args.skip_llm:
        report("llm", llm)
        lm = llm.m2e()
        le, ln = word_errors(heard.said[warm_lines + len(said_scripted):], QUESTIONS)
        print(f"llm: mouth_to_ear_p50_ms={pct(lm, 50) * 1000:.0f} mouth_to_ear_p95_ms={pct(lm, 95) * 1000:.0f} "
              f"barge_in_stop_ms={pct(llm.barge_in_stop, 50) * 1000:.0f} premature_turn_ends={llm.premature} "
              f"unanswered={llm.unanswered} wer={le / max(1, ln):.3f} ({len(fake.requests)} LLM requests)")
    print(f"conversation: mouth_to_ear_p50_ms={pct(m2e, 50) * 1000:.0f} mouth_to_ear_p95_ms={pct(m2e, 95) * 1000:.0f} "
          f"barge_in_stop_ms={pct(scripted.barge_in_stop, 50) * 1000:.0f} premature_turn_ends={scripted.premature} "
          f"false_barge_ins={scripted.false_barge_ins} unanswered={scripted.unanswered} wer={e / max(1, n):.3f} "
          f"noise_pauses={scripted.noise_pauses}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-llm", action="store_true", help="only the scripted call")
    parser.add_argument("--eou-ms", type=int, default=0,
                        help="scripted agent's end_of_utterance_silence_ms (default: the agent default)")
    parser.add_argument("--no-warm", action="store_true", help="no warm-up call (phrases synthesized on first use)")
    asyncio.run(main(parser.parse_args()))
