"""``voicegw call --say/--dtmf``: an emulated caller that holds a short conversation, turn by turn.

The script runs inside :meth:`gateway.twilio.emulator.TwilioEmulator.call` (the emulator still does all of the
Twilio side: real-time inbound frames, playout, mark echoes). Order of a call:

1. wait until the greeting has been heard (mark ``greeting-1`` echoed, playout idle);
2. each ``--say`` in the order given: the caller's line, synthesized with the local Piper voice
   (:class:`tts.piper.PiperEngine`, caller side, independent of the gateway's engines) and converted to
   8 kHz mu-law with :class:`audio.resample.ToTwilio`, is streamed as inbound media in real time;
   then wait until the agent's reply has been heard (a new ``turnN-start`` mark echoed, every mark
   echoed and playout idle for a moment);
3. then the ``--dtmf`` digits, one ``dtmf`` event each, and wait for the reply the same way.

One line is printed per turn: ``agent: …`` for what the caller heard (greeting and each reply) and
``caller: …`` for what the caller said or pressed. The agent's lines are Whisper transcripts of the
heard audio (:mod:`agents.stt`, offline tiny.en) when faster-whisper and its model are installed;
otherwise they give the seconds heard. A reply that never comes (no speech detected, agent silent)
prints ``agent: (no reply within N s)`` and the call goes on.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.stt import STTConfig, STTError, WhisperTranscriber, shared_transcriber
from audio.formats import TWILIO_FORMAT, AudioChunk
from audio.resample import ToTwilio
from gateway.twilio.emulator import CallControl, CallResult, TwilioEmulator
from tts.base import SynthesisRequest
from tts.piper import PiperEngine

REPLY_WAIT_S = 30.0  # how long a turn may take to start playing after the caller finished
IDLE_SETTLE_S = 0.6  # playout idle this long = the reply is over, not a gap between two sentences
POLL_S = 0.05
DTMF_GAP_S = 0.2  # between two keypresses


@dataclass(frozen=True, slots=True)
class Turn:
    speaker: str  # "caller" or "agent"
    text: str


def stt_available() -> bool:
    return importlib.util.find_spec("faster_whisper") is not None


async def caller_speech(engine: PiperEngine, text: str) -> bytes:
    """``text`` in the caller's voice as 8 kHz mu-law (framed by the emulator, padded with silence)."""
    out = bytearray()
    conv: ToTwilio | None = None
    async for chunk in engine.synthesize(SynthesisRequest(text=text)):
        conv = conv or ToTwilio(chunk.format)
        out.extend(conv.feed(chunk))
    if conv is not None:
        out.extend(conv.flush())
    return bytes(out)


async def _wait(check: Callable[[], bool], within_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def _settled(c: CallControl, within_s: float) -> bool:
    """Playout idle (every mark echoed, buffer played) for IDLE_SETTLE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    idle_since: float | None = None
    while loop.time() < deadline:
        if c.playout.idle():
            idle_since = idle_since if idle_since is not None else loop.time()
            if loop.time() - idle_since >= IDLE_SETTLE_S:
                return True
        else:
            idle_since = None
        await asyncio.sleep(POLL_S)
    return False


def _starts(c: CallControl) -> set[str]:
    return {m for m in c.result.marks_echoed if m.startswith("turn") and m.endswith("-start")}


class Conversation:
    """The caller's script plus the per-turn printing."""

    def __init__(self, says: Sequence[str], dtmf: str, echo: Callable[[str], None] = print,
                 transcriber: WhisperTranscriber | None = None, piper: PiperEngine | None = None) -> None:
        self.says = list(says)
        self.dtmf = dtmf
        self.echo = echo
        self.transcriber = transcriber
        self.piper = piper or PiperEngine()
        self.turns: list[Turn] = []

    def _line(self, speaker: str, text: str) -> None:
        self.turns.append(Turn(speaker, text))
        self.echo(f"{speaker}: {text}")

    async def _agent_line(self, audio: bytes) -> None:
        seconds = len(audio) / TWILIO_FORMAT.sample_rate
        text = f"(heard {seconds:.2f} s)"
        if self.transcriber is not None and audio:
            try:
                text = (await self.transcriber.transcribe(AudioChunk(audio, TWILIO_FORMAT))).text or text
            except STTError as exc:
                text = f"(heard {seconds:.2f} s; not transcribed: {exc})"
        self._line("agent", text)

    async def _reply(self, c: CallControl, before: set[str], offset: int) -> None:
        """Wait for a new turn to start and finish playing; print what was heard since ``offset``."""
        if not await _wait(lambda: bool(_starts(c) - before), REPLY_WAIT_S):
            self._line("agent", f"(no reply within {REPLY_WAIT_S:g} s)")
            return
        await _settled(c, REPLY_WAIT_S)
        await self._agent_line(bytes(c.result.heard[offset:]))

    async def script(self, c: CallControl) -> None:
        speech = asyncio.ensure_future(asyncio.gather(*(caller_speech(self.piper, s) for s in self.says)))
        try:
            await _wait(lambda: "greeting-1" in c.result.marks_echoed, REPLY_WAIT_S)
            await _settled(c, REPLY_WAIT_S)
            await self._agent_line(bytes(c.result.heard))
            for text, mulaw in zip(self.says, await speech, strict=True):
                before, offset = _starts(c), len(c.result.heard)
                self._line("caller", text)
                c.speak(mulaw)
                await _wait(lambda: not c.inbound, len(mulaw) / 8000 + REPLY_WAIT_S)
                await self._reply(c, before, offset)
            if self.dtmf:
                before, offset = _starts(c), len(c.result.heard)
                self._line("caller", f"[keypad {self.dtmf}]")
                for digit in self.dtmf:
                    await c.dtmf(digit)
                    await asyncio.sleep(DTMF_GAP_S)
                await self._reply(c, before, offset)
        finally:
            speech.cancel()


async def converse(emu: TwilioEmulator, agent: str, to: str, says: Sequence[str], dtmf: str = "",
                   max_s: float | None = None, echo: Callable[[str], None] = print) -> CallResult:
    """Place one call that says ``says`` then presses ``dtmf``; prints one line per turn."""
    transcriber = shared_transcriber(STTConfig()) if stt_available() else None  # loads while the call starts
    piper = PiperEngine()
    await piper.start()
    if not piper.ready:
        raise RuntimeError(piper.load_error or "cannot load the caller's Piper voice")
    conversation = Conversation(says, dtmf, echo, transcriber, piper)
    if max_s is None:
        max_s = 30.0 + 30.0 * (len(says) + bool(dtmf))
    try:
        return await emu.call(agent=agent, to=to, hold_s=0.3, max_s=max_s, script=conversation.script)
    finally:
        await piper.aclose()
