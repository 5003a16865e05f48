"""The ChatTTS inference thread: one model, one thread, micro-batches of sentences.

ChatTTS is not thread-safe (one interrupt flag, one seeded generator, shared
default params per ``Chat``), so exactly one thread touches the model. The
event loop submits jobs; the thread forms batches with
:class:`tts.chattts_sched.Scheduler` and streams each row's audio back through
the job's ``sink`` callable.

Why below ``Chat.infer``: ``infer`` applies one speaker, one speed prompt and
one set of sampling params to a whole batch, its ``interrupt()`` stops every
row, and its stream decodes every row until the longest one ends. This module
drives the same library pieces (normalizer, tokenizer, ``Embed``, ``Speaker``,
``GPT.generate``, decoder, Vocos) itself, so that one batch can hold calls with
different voices and settings:

- per-row prompt (``[speed_N]``) and speaker embedding (``Speaker.apply`` on
  each row's slice of the embedding);
- per-row temperature / top-p / top-k / min-max length and cancellation in one
  logits processor (:class:`_RowControl`): a cancelled row is forced to EOS,
  so it stops generating at the next step, and the whole batch stops once
  every row is done or cancelled; cancelled rows are never decoded;
- per-row streaming: each row is decoded in a window (left context = the
  decoder+vocoder receptive field, so the window edge cannot change emitted
  samples) and emitted up to ``holdback`` tokens before its current end; a row
  that reaches EOS is flushed and closed at once, not when the batch ends.
This couples us to ChatTTS internals: the package is pinned (``chattts==0.2.5``).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tts.base import TTSError
from tts.chattts_assets import AssetError, ModelSource, resolve_model_dir
from tts.chattts_model import RowControl, config_from_geometry, receptive_field_tokens
from tts.chattts_sched import Item, Scheduler
from tts.chattts_voices import load_presets
from tts.metrics import TTSMetrics

log = logging.getLogger("voicegw.tts.chattts")

SAMPLE_RATE = 24000
#: One audio token = 2 mel frames × hop 256.
SAMPLES_PER_TOKEN = 512
Sink = Callable[[object], None]  # np.ndarray chunk, None (end) or TTSError


@dataclass(frozen=True, slots=True)
class Tuning:
    """Batching and streaming knobs (see docs/chattts.md for the trade-offs)."""

    max_batch: int = 8
    max_queue: int = 64
    batch_window_s: float = 0.015
    #: GPT hands partial results over every this many tokens (library default 24).
    stream_step_tokens: int = 12
    #: Tokens at the end of a row not yet sent: the non-causal decoder may still change them.
    stream_holdback_tokens: int = 12
    #: Testing/bench: every sentence is exactly this many audio tokens.
    fixed_tokens: int | None = None
    #: Also observe tts_processing / tts_rtf / sentence_first_audio here. Off by default: in the gateway
    #: the Speaker and the call already observe them per provider (they would count twice).
    sentence_metrics: bool = False


@dataclass(eq=False)
class Job:
    """One sentence for the inference thread. ``text`` is already ChatTTS-safe (see tts.normalize)."""

    text: str
    lang: str
    speaker: str
    prompt: str
    temperature: float
    top_p: float
    top_k: int
    use_refine: bool
    seed: int | None
    min_tokens: int
    max_tokens: int
    sink: Sink
    request_id: str = ""
    enqueued: float = 0.0
    item: Item | None = None

    @property
    def cancelled(self) -> bool:
        return self.item is not None and self.item.cancelled


@dataclass(eq=False)
class _Row:
    job: Job
    started: float
    emitted_tokens: int = 0
    emitted_samples: int = 0
    batch_size: int = 1
    first_audio: float | None = None
    closed: bool = False


@dataclass
class WorkerStats:
    """Counters for tests and the bench."""

    batches: int = 0
    rows: int = 0
    gpt_steps: int = 0
    tokens: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class Worker:
    """Owns the ``Chat`` and the inference thread."""

    def __init__(
        self,
        model_dir: Any,
        device: str,
        compile: bool,
        sha256_override: dict[str, str] | None,
        tuning: Tuning,
        metrics: TTSMetrics | None,
        allow_download: bool = True,
    ) -> None:
        self.model_dir, self.device_pref, self.compile = model_dir, device, compile
        self.sha256_override, self.allow_download = sha256_override, allow_download
        self.tuning, self.metrics = tuning, metrics
        self.sched = Scheduler(tuning.max_batch, tuning.max_queue, tuning.batch_window_s)
        self.cond = threading.Condition()
        self.stats = WorkerStats()
        self.presets: dict[str, str] = {}
        self.hidden = 0
        self.device = "cpu"
        self._stop = False
        #: Why the inference thread stopped serving (None while it serves).
        self.dead: str | None = None
        self._chat: Any = None
        self._context: Any = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle (called from the event loop thread) ----
    def start(self, on_loaded: Callable[[str | None], None]) -> None:
        self._thread = threading.Thread(target=self._main, args=(on_loaded,), name="chattts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stop = True
            if self._context is not None:
                self._context.set(True)
            self.cond.notify_all()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, job: Job, priority: int, deadline: float | None) -> str | None:
        now = time.monotonic()
        job.enqueued = now
        # refine is a separate pass with one seed per batch: refine requests group by seed
        key = (True, job.seed) if job.use_refine else (False, None)
        job.item = Item(priority, now, deadline, key=key, payload=job)
        with self.cond:
            if self._stop:
                return self.dead or "engine is shutting down"
            reason = self.sched.admit(job.item, now)
            self.cond.notify_all()
        return reason

    def cancel(self, job: Job) -> None:
        if job.item is not None and not job.item.cancelled:
            job.item.cancelled = True  # read by the scheduler and by _RowControl at the next step
            with self.cond:
                self.cond.notify_all()

    # ---- the inference thread ----
    def _main(self, on_loaded: Callable[[str | None], None]) -> None:
        try:
            self._load()
        except Exception as exc:
            reason = str(exc) if isinstance(exc, AssetError) else f"{type(exc).__name__}: {exc}"
            log.debug("ChatTTS not available: %s", reason)  # the engine's owner logs it, at the level it deserves
            on_loaded(reason)
            return
        on_loaded(None)
        try:
            self._serve()
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("ChatTTS inference thread died")
            with self.cond:
                self._stop, self.dead = True, f"inference thread died: {type(exc).__name__}: {exc}"
                items, self.sched.queue = self.sched.queue, []
            for item in items:
                self._fail(item.payload, self.dead)

    def _serve(self) -> None:
        while True:
            with self.cond:
                while not self._stop:
                    wait = self.sched.wait_time(time.monotonic())
                    if wait == 0.0:
                        break
                    self.cond.wait(wait)
                if self._stop:
                    items, self.sched.queue = self.sched.queue, []
                    for item in items:
                        self._fail(item.payload, "engine closed")
                    return
                batch, expired = self.sched.take_batch(time.monotonic())
            for item in expired:
                self._fail(item.payload, "deadline passed while queued")
            if batch:
                first = self._run_batch([i.payload for i in batch if isinstance(i.payload, Job)])
                with self.cond:
                    self.sched.batch_done(time.monotonic(), first)

    @staticmethod
    def _fail(job: object, reason: str) -> None:
        if isinstance(job, Job):
            job.sink(TTSError("chattts", reason))

    def _load(self) -> None:
        source: ModelSource = resolve_model_dir(self.model_dir, self.sha256_override,
                                                allow_download=self.allow_download)
        import torch

        warnings.filterwarnings("ignore", message=r".*past_key_values.*", category=FutureWarning)
        import ChatTTS

        pref = self.device_pref
        device = torch.device("cuda" if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()) else "cpu")
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        else:
            torch.set_num_threads(1)
            log.warning("ChatTTS runs on CPU: expect slower than real time at full size (use a GPU in production)")
            if self.compile:
                log.warning("CHATTTS_COMPILE is ignored on CPU (torch.compile is used on CUDA only)")
        chat = ChatTTS.Chat(logging.getLogger("voicegw.tts.chattts.lib"))
        geometry = dict(source.geometry) if source.geometry else None
        if geometry is not None:
            chat.config = config_from_geometry(geometry)
        chat.sha256_map = dict(source.sha256)
        t0 = time.monotonic()
        if not chat.load(source="custom", custom_path=str(source.path), device=device,
                         compile=self.compile and device.type == "cuda"):
            raise AssetError(f"ChatTTS refused the weights in {source.path} (see the log above)")
        self.device = device.type
        self.hidden = int(chat.config.gpt.hidden_size)
        voices = geometry.get("voices") if geometry else None
        self.presets = dict(voices) if isinstance(voices, dict) else load_presets()
        self._chat, self._context = chat, chat.context
        self._rf_tokens = receptive_field_tokens(chat.config)
        log.info("ChatTTS loaded from %s on %s in %.1fs; warming up", source.path, device, time.monotonic() - t0)
        self._warm_up()

    def _warm_up(self) -> None:
        """First calls JIT (numba normalizer, torch kernels, compile): pay it before readiness turns green."""
        t0 = time.monotonic()
        self._chat.normalizer("warm up 你好", True, True, "en")
        sink: Sink = lambda item: None  # noqa: E731
        job = Job("hello.", "en", self.presets[next(iter(self.presets))], "[speed_5]", 0.3, 0.7, 20, False, None,
                  24, 24, sink)
        job.enqueued = time.monotonic()
        self._run_batch([job], record=False)
        log.info("ChatTTS warm-up took %.1fs", time.monotonic() - t0)

    def _run_batch(self, jobs: list[Job], record: bool = True) -> float | None:
        """Generate and stream one batch; returns the first row's time to first audio."""
        import torch

        chat, tuning = self._chat, self.tuning
        t0 = time.monotonic()
        rows = [_Row(j, t0, batch_size=len(jobs)) for j in jobs]
        if record:
            self.stats.batches += 1
            self.stats.rows += len(jobs)
            self.stats.batch_sizes.append(len(jobs))
            if self.metrics:
                self.metrics.chattts_batch_size.observe(len(jobs))
                for j in jobs:
                    self.metrics.chattts_queue_wait.observe(t0 - j.enqueued)
        ctrl: RowControl | None = None
        try:
            with torch.no_grad():
                texts = [chat.normalizer(j.text, True, True, j.lang) for j in jobs]
                log.debug("chattts batch texts: %r", texts)
                if jobs[0].use_refine:
                    texts = self._refine(texts, jobs[0].seed)
                prompts = [chat.speaker.decorate_code_prompts([t], j.prompt, None, j.speaker)[0]
                           for t, j in zip(texts, jobs, strict=True)]
                num_vq = int(chat.config.gpt.num_vq)
                input_ids, attention_mask, text_mask = chat.tokenizer.encode(prompts, num_vq, device=chat.device_gpt)
                emb = chat.embed(input_ids, text_mask)
                for i, j in enumerate(jobs):  # per-row speaker: writes into this row's slice of emb
                    chat.speaker.apply(emb[i : i + 1], j.speaker, input_ids[i : i + 1],
                                       chat.tokenizer.spk_emb_ids, chat.gpt.device_gpt)
                eos = int(chat.config.gpt.num_audio_tokens) - 1
                ctrl = RowControl(jobs, num_vq, eos, chat.device)
                gen = chat.gpt.generate(
                    emb, input_ids, temperature=torch.ones(num_vq, device=chat.device), eos_token=eos,
                    attention_mask=attention_mask, max_new_token=max(j.max_tokens for j in jobs) + 1,
                    min_new_token=0, logits_processors=(ctrl,), infer_text=False, return_hidden=True, stream=True,
                    show_tqdm=False, ensure_non_empty=False, stream_batch=tuning.stream_step_tokens,
                    manual_seed=None, context=chat.context,
                )
                chat.context.set(self._stop)
                for out in gen:
                    self._emit(rows, out.hiddens, ctrl.steps, final=False)
                    if all(r.closed for r in rows):
                        gen.close()
                        break
                else:
                    self._emit(rows, out.hiddens, ctrl.steps, final=True)
        except Exception as exc:
            log.exception("ChatTTS batch of %d failed", len(jobs))
            for r in rows:
                if not r.closed:
                    r.closed = True
                    r.job.sink(TTSError("chattts", f"synthesis failed: {type(exc).__name__}: {exc}"))
        if record and ctrl is not None:
            self.stats.gpt_steps += ctrl.steps
        for r in rows:  # rows stopped by engine shutdown
            if not r.closed:
                r.closed = True
                r.job.sink(TTSError("chattts", "engine closed"))
        firsts = [r.first_audio - t0 for r in rows if r.first_audio is not None]
        return min(firsts) if firsts else None

    def _refine(self, texts: list[str], seed: int | None) -> list[str]:
        chat = self._chat
        params = chat.RefineTextParams(show_tqdm=False, manual_seed=seed)
        refined = chat._refine_text(texts, chat.device, params)
        ids = [i[i.less(chat.tokenizer.break_0_ids)] for i in refined.ids]
        out: list[str] = chat.tokenizer.decode(ids)
        refined.destroy()
        return out

    def _emit(self, rows: list[_Row], hiddens: list[Any], steps: int, final: bool) -> None:
        """Decode and send what each open row may send now; close rows that reached EOS.

        After GPT step ``steps - 1`` a live row holds ``steps`` tokens; a row that emitted EOS holds fewer.
        """
        groups: dict[int, list[tuple[_Row, Any, int, int, bool]]] = {}
        for row, h in zip(rows, hiddens, strict=True):
            if row.closed:
                continue
            if row.job.cancelled:
                row.closed = True
                row.job.sink(None)
                continue
            n = int(h.size(0))
            done = final or n < steps
            upto = n if done else n - self.tuning.stream_holdback_tokens
            if n == 0 or (not done and upto <= row.emitted_tokens):
                if done:
                    self._close(row, n)
                continue
            # decode a window: left context wide enough that the window edge cannot change emitted samples
            start = max(0, row.emitted_tokens - self._rf_tokens)
            groups.setdefault(n - start, []).append((row, h, start, upto, done))
        for members in groups.values():  # equal lengths: no padding, so batching cannot change samples
            wavs = self._chat._decode_to_wavs([h[start:].clone() for _, h, start, _, _ in members], True)
            now = time.monotonic()
            for (row, _, start, upto, done), wav in zip(members, wavs, strict=True):
                end = len(wav) if done else (upto - start) * SAMPLES_PER_TOKEN
                chunk = np.ascontiguousarray(wav[row.emitted_samples - start * SAMPLES_PER_TOKEN : end],
                                             dtype=np.float32)
                row.emitted_tokens, row.emitted_samples = upto, row.emitted_samples + len(chunk)
                if len(chunk) and not row.job.cancelled:
                    row.first_audio = row.first_audio or now
                    row.job.sink(chunk)
                if done:
                    self._close(row, upto)

    def _close(self, row: _Row, tokens: int) -> None:
        row.closed = True
        job = row.job
        job.sink(None)
        now = time.monotonic()
        audio_s = row.emitted_samples / SAMPLE_RATE
        self.stats.tokens += tokens
        if row.first_audio is None or audio_s <= 0:
            return
        first = row.first_audio - job.enqueued
        processing = now - row.started
        rtf = processing / audio_s
        if self.metrics and self.tuning.sentence_metrics:
            self.metrics.tts_processing.labels("chattts").observe(processing)
            self.metrics.tts_rtf.labels("chattts").observe(rtf)
            self.metrics.sentence_first_audio.labels("chattts").observe(first)
        log.info("chattts sentence %s: batch %d, queue %.3fs, first audio %.3fs, processing %.3fs, "
                 "%d tokens = %.2fs audio, rtf %.2f", job.request_id or "-", row.batch_size,
                 row.started - job.enqueued, first, processing, tokens, audio_s, rtf)
