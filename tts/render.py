"""Render whole texts to one audio file through a Speaker (the HTTP API and ``voicegw say``).

The text is cut into sentences; each goes through the Speaker (so a fallback
redoes only that sentence) and the kept audio of every sentence, whatever
provider and format it came in, is converted to one output: PCM int16 at
24 kHz (ChatTTS's native rate), then encoded as WAV, MP3 (``lameenc``), raw
PCM or 8 kHz mu-law (through the gateway's own ``ToTwilio`` chain). The CPU-heavy
steps (decoding, resampling, encoding) run in worker threads, never on the event loop
that paces every call's audio.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
import wave
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import soxr

from audio import codec
from audio.codec import float_to_int16
from audio.formats import AudioChunk, AudioFormat, Encoding
from audio.resample import ToTwilio
from tts.fallback import Speaker, SpeechRestart

OUTPUT_RATE = 24000
FORMATS = ("wav", "mp3", "pcm", "mulaw")
MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "pcm": f"audio/L16;rate={OUTPUT_RATE};channels=1",
               "mulaw": "audio/basic"}

_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？])\s+")


def split_sentences(text: str) -> list[str]:
    """Cut after sentence punctuation followed by whitespace; never returns empty pieces."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def mp3_available() -> bool:
    try:
        import lameenc  # noqa: F401
    except ImportError:
        return False
    return True


def to_float(chunk: AudioChunk) -> npt.NDArray[np.float32]:
    """:func:`audio.codec.to_float`, with an engine's non-finite float samples made safe (NaN → 0, ±inf → ±1)."""
    x = codec.to_float(chunk)
    if chunk.format.encoding is Encoding.PCM_F32:
        return np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return x


@dataclass
class Rendered:
    pcm: npt.NDArray[np.int16]  # mono, OUTPUT_RATE
    providers: list[str] = field(default_factory=list)  # one per sentence
    fallbacks: list[str] = field(default_factory=list)
    processing_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / OUTPUT_RATE

    @property
    def rtf(self) -> float:
        return self.processing_s / self.duration_s if self.duration_s > 0 else 0.0


#: Priority of the speech API's sentences: behind every call's (0 = a turn's first sentence, 1 = the others), in
#: the ChatTTS scheduler and in Piper's queue, so an API job never delays what a caller waits for.
API_PRIORITY = 2


async def render(
    speaker: Speaker, text: str, *, language: str = "en", request_id: str = "", priority: int | None = None
) -> Rendered:
    """Speak every sentence of ``text``; raises TTSError("all", …) if one cannot be spoken at all.

    ``priority``: every sentence's (e.g. :data:`API_PRIORITY`); None: 0 for the first sentence, 1 after.
    """
    t0 = time.monotonic()
    pieces: list[npt.NDArray[np.float32]] = []
    out = Rendered(np.zeros(0, dtype=np.int16))
    for i, sentence in enumerate(split_sentences(text)):
        parts: list[AudioChunk] = []
        provider = ""
        level = priority if priority is not None else (0 if i == 0 else 1)
        async for item in speaker.speak(sentence, language=language, priority=level,
                                        request_id=f"{request_id}-{i + 1}", turn_id=request_id):
            if isinstance(item, SpeechRestart):
                parts.clear()  # the sentence starts again from its beginning
                continue
            parts.append(item.chunk)
            provider = item.provider
        if speaker.reports and speaker.reports[-1].fallbacks:
            out.fallbacks.extend(speaker.reports[-1].fallbacks)
        if not parts:
            continue
        out.providers.append(provider)
        pieces.append(await asyncio.to_thread(_sentence_pcm, parts))  # decoding and resampling: off the loop
    if pieces:
        out.pcm = await asyncio.to_thread(lambda: float_to_int16(np.concatenate(pieces)))
    out.processing_s = time.monotonic() - t0
    return out


def _sentence_pcm(parts: list[AudioChunk]) -> npt.NDArray[np.float32]:
    rate = parts[0].format.sample_rate
    x = np.concatenate([to_float(c) for c in parts if c.format.sample_rate == rate])
    if rate != OUTPUT_RATE:
        x = soxr.resample(x, rate, OUTPUT_RATE, quality="HQ").astype(np.float32)
    return x


def wav_bytes(pcm: npt.NDArray[np.int16], rate: int) -> bytes:
    """A mono 16-bit WAV file of ``pcm`` at ``rate``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


async def encode_off_loop(pcm: npt.NDArray[np.int16], fmt: str) -> bytes:
    """:func:`encode` in a worker thread: MP3 costs ~13 ms of CPU per second of audio (240 s: 3 s), and
    lameenc, soxr and numpy release the GIL, so calls sharing the event loop keep their frame pacing."""
    return await asyncio.to_thread(encode, pcm, fmt)


def encode(pcm: npt.NDArray[np.int16], fmt: str) -> bytes:
    """Encode OUTPUT_RATE int16 mono as one of FORMATS (CPU-bound: from a server, use :func:`encode_off_loop`)."""
    if fmt == "pcm":
        return pcm.astype("<i2").tobytes()
    if fmt == "wav":
        return wav_bytes(pcm, OUTPUT_RATE)
    if fmt == "mulaw":
        conv = ToTwilio(AudioFormat(Encoding.PCM_S16, OUTPUT_RATE))
        return conv.feed(AudioChunk(pcm, AudioFormat(Encoding.PCM_S16, OUTPUT_RATE))) + conv.flush()
    if fmt == "mp3":
        import lameenc

        enc = lameenc.Encoder()
        enc.set_bit_rate(64)
        enc.set_in_sample_rate(OUTPUT_RATE)
        enc.set_channels(1)
        enc.set_quality(2)
        return bytes(enc.encode(pcm.astype("<i2").tobytes())) + bytes(enc.flush())
    raise ValueError(f"unsupported format {fmt!r}; supported: {', '.join(FORMATS)}")
