"""Test-only TTS providers with injectable faults (they stand in for outside providers).

Their mu-law audio spells out provider, sentence and chunk number, so a test can
reconstruct exactly what a caller would have heard and check order, loss and
duplication byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from audio.formats import TWILIO_FORMAT, AudioChunk
from tts.base import SynthesisRequest, TTSError

CHUNK_BYTES = 800  # 100 ms of 8 kHz mu-law


@dataclass
class Fault:
    """What goes wrong on one call. ``None`` fields: nothing."""

    raise_before_audio: str | None = None  # TTSError reason raised before any audio
    first_audio_delay: float = 0.0  # seconds before the first chunk
    die_after: int | None = None  # raise after this many chunks
    stall_after: int | None = None  # hang forever after this many chunks
    crash: bool = False  # raise a non-TTSError (an engine bug)


@dataclass
class ScriptedEngine:
    name: str
    chunks: int = 4
    chunk_delay: float = 0.005
    is_ready: bool = True
    #: Faults by call number (0-based); ``default`` for the others.
    faults: dict[int, Fault] = field(default_factory=dict)
    default: Fault = field(default_factory=Fault)
    calls: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    requests: list[SynthesisRequest] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.is_ready

    def audio(self, text: str) -> bytes:
        """The full audio this engine produces for ``text``."""
        return b"".join(self._chunk(text, k) for k in range(self.chunks))

    def _chunk(self, text: str, k: int) -> bytes:
        label = f"[{self.name}:{text}:{k}]".encode()
        return (label * (CHUNK_BYTES // len(label) + 1))[:CHUNK_BYTES]

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        n = len(self.calls)
        self.calls.append(request.text)
        self.requests.append(request)
        fault = self.faults.get(n, self.default)
        try:
            if fault.first_audio_delay:
                await asyncio.sleep(fault.first_audio_delay)
            if fault.raise_before_audio is not None:
                raise TTSError(self.name, fault.raise_before_audio)
            if fault.crash:
                raise RuntimeError("engine bug")
            for k in range(self.chunks):
                if fault.die_after is not None and k == fault.die_after:
                    raise TTSError(self.name, "died mid-sentence")
                if fault.stall_after is not None and k == fault.stall_after:
                    await asyncio.Event().wait()
                yield AudioChunk(self._chunk(request.text, k), TWILIO_FORMAT)
                await asyncio.sleep(self.chunk_delay)
            self.completed.append(request.text)
        except asyncio.CancelledError:
            self.cancelled.append(request.text)
            raise
        except GeneratorExit:
            self.cancelled.append(request.text)
            raise

    async def aclose(self) -> None:
        return None
