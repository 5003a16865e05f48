"""ChatTTS engine: the product's primary voice, in process, one model per GPU.

The asyncio front end of :mod:`tts.chattts_worker`. Constructing the engine
costs nothing (no torch import); :meth:`ChatTTSEngine.start` resolves and
verifies the weights, loads them and warms up in the inference thread without
blocking the event loop, so the gateway builds and starts it only when some
agent uses ChatTTS. If the weights are missing or corrupt, :attr:`load_error`
names what is wrong, :attr:`ready` stays False and the fallback speaks.

Every request's text goes through :func:`tts.normalize.chattts_text` first:
ChatTTS silently deletes digits, currency signs and most symbols.
Voice settings (:class:`tts.settings.ChatTTSVoice`, typed) map per request:
``voice``/``speaker`` → speaker embedding, ``speed`` → ``[speed_N]`` prompt
(:func:`speed_prompt`), ``temperature``/``top_p``/``top_k`` → sampling,
``use_refine`` → the refine-text pass, ``seed`` → reproducible output.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio.formats import AudioChunk, AudioFormat, Encoding
from tts.base import SynthesisRequest, TTSError
from tts.chattts_voices import VoiceError, resolve_speaker
from tts.chattts_worker import SAMPLE_RATE, Job, Tuning, Worker, WorkerStats
from tts.metrics import TTSMetrics
from tts.normalize import chattts_text
from tts.settings import CHATTTS_SPEED, ChatTTSVoice

log = logging.getLogger("voicegw.tts.chattts")

CHATTTS_FORMAT = AudioFormat(Encoding.PCM_F32, SAMPLE_RATE)
#: Upper bound on audio tokens per sentence: 64 + 16 per character (≈0.34 s/char), at most 2048 (43.7 s).
_TOKENS_BASE, _TOKENS_PER_CHAR, _TOKENS_MAX = 64, 16, 2048
_INLINE_NORMALIZE_CHARS = 300


def speed_prompt(speed: float) -> str:
    """Map ``speed`` 0.5–2.0 to ChatTTS's ``[speed_N]`` token: N = round(5 + 4·log2(speed)), so 1.0 → 5.

    0.5 → 1, 0.75 → 3, 1.0 → 5 (the library default), 1.25 → 6, 1.5 → 7, 2.0 → 9. Log scale because
    speed is a ratio; ``[speed_0]`` is left unused so that the range is symmetric around the default.
    """
    CHATTTS_SPEED.check(speed)
    return f"[speed_{min(9, max(1, round(5 + 4 * math.log2(speed))))}]"


@dataclass(frozen=True, slots=True)
class ChatTTSConfig:
    model_dir: Path | None = None
    device: str = "auto"  # auto | cuda | cpu
    compile: bool = False
    #: Expected sha256 per asset (keys as in ChatTTS's sha256_map.json); None: the package's own map.
    sha256_override: Mapping[str, str] | None = None
    #: When no model_dir is given: download the official weights into the HF cache if online.
    allow_download: bool = True
    tuning: Tuning = field(default_factory=Tuning)


class ChatTTSEngine:
    name = "chattts"

    def __init__(self, config: ChatTTSConfig | None = None, metrics: TTSMetrics | None = None) -> None:
        self.config = config or ChatTTSConfig()
        if self.config.device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be auto, cuda or cpu, not {self.config.device!r}")
        self.metrics = metrics
        self._worker: Worker | None = None
        self._ready = False
        self._load_error: str | None = None
        self._loaded: asyncio.Future[str | None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready and self._worker is not None and self._worker.dead is None

    @property
    def load_error(self) -> str | None:
        """Why the engine is not available (what is missing or corrupt), None while loading or once loaded."""
        return self._load_error or (self._worker.dead if self._worker else None)

    @property
    def stats(self) -> WorkerStats:
        if self._worker is None:
            return WorkerStats()
        return self._worker.stats

    @property
    def device(self) -> str:
        return self._worker.device if self._worker else "none"

    async def start(self) -> None:
        """Load and warm up in the inference thread; returns when ready or failed (see :attr:`load_error`)."""
        if self._loaded is None:
            loop = asyncio.get_running_loop()
            self._loaded = loop.create_future()
            loaded = self._loaded
            cfg = self.config

            def on_loaded(err: str | None) -> None:
                def settle() -> None:
                    if not loaded.done():
                        loaded.set_result(err)

                try:
                    loop.call_soon_threadsafe(settle)
                except RuntimeError:  # loop closed: nobody is waiting
                    pass

            self._worker = Worker(cfg.model_dir, cfg.device, cfg.compile,
                                  dict(cfg.sha256_override) if cfg.sha256_override is not None else None,
                                  cfg.tuning, self.metrics, cfg.allow_download)
            self._worker.start(on_loaded)
        err = await asyncio.shield(self._loaded)
        self._load_error, self._ready = err, err is None

    def _job(self, request: SynthesisRequest, text: str, sink: Any) -> Job:
        assert self._worker is not None
        s = request.settings_as(ChatTTSVoice)
        tuning = self.config.tuning
        try:
            speaker = resolve_speaker(s, self._worker.presets, self._worker.hidden)
            prompt = speed_prompt(s.speed)
        except (VoiceError, ValueError) as exc:
            raise TTSError(self.name, str(exc)) from exc
        limit = min(_TOKENS_MAX, _TOKENS_BASE + _TOKENS_PER_CHAR * len(text))
        lo, hi = (tuning.fixed_tokens, tuning.fixed_tokens) if tuning.fixed_tokens else (0, limit)
        return Job(
            text=text, lang="zh" if request.language.lower().startswith("zh") else "en", speaker=speaker,
            prompt=prompt, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, use_refine=s.use_refine,
            seed=s.seed, min_tokens=lo, max_tokens=hi, sink=sink, request_id=request.request_id,
        )

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        if not self.ready or self._worker is None:
            raise TTSError(self.name, self.load_error or "not loaded")
        if len(request.text) <= _INLINE_NORMALIZE_CHARS:  # a phone sentence: well under a millisecond
            text = chattts_text(request.text, request.language)
        else:  # API text or a runaway LLM sentence: num2words costs ~0.2 ms a number, keep it off the loop
            text = await asyncio.to_thread(chattts_text, request.text, request.language)
        if not text.strip(" ,.，。、"):
            return  # nothing ChatTTS could say (e.g. only punctuation)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def sink(item: object) -> None:  # called from the inference thread
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: the caller is gone too
                pass

        job = self._job(request, text, sink)
        reason = self._worker.submit(job, request.priority, request.deadline)
        if reason is not None:
            raise TTSError(self.name, reason)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, TTSError):
                    raise item
                assert isinstance(item, np.ndarray)
                yield AudioChunk(item, CHATTTS_FORMAT)
        finally:
            self._worker.cancel(job)  # no-op when finished; else frees its batch row at the next step

    async def aclose(self) -> None:
        self._ready = False
        if self._worker is not None:
            self._worker.stop()
            await asyncio.to_thread(self._worker.join, 30.0)
