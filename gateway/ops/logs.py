"""Structured logging: call context on every line, JSON when asked, one summary line per call.

Rules of this file: no asyncio, no clocks (records carry their own time),
no network. The call context lives in :mod:`contextvars`, so it is bound once
where a media stream starts and every task the call creates inherits it; any
log line written on behalf of the call (gateway, TTS engines, store) carries
``call_sid``, ``stream_sid`` and ``agent_id`` without passing them around.

Every line is scrubbed: URL credentials and registered secrets (:func:`add_secrets`) become ``***``,
control characters in the text format become visible escapes, and caller transcripts appear only when
``VOICEGW_LOG_TRANSCRIPTS=1`` (:func:`transcript`).

``VOICEGW_LOG_JSON=1`` switches to one JSON object per line (for Loki, Cloud
Logging, ...); the plain format appends ``[call=… agent=…]`` when bound.
The call summary is a pure value built from what the call collected.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

call_sid: contextvars.ContextVar[str] = contextvars.ContextVar("call_sid", default="")
stream_sid: contextvars.ContextVar[str] = contextvars.ContextVar("stream_sid", default="")
agent_id: contextvars.ContextVar[str] = contextvars.ContextVar("agent_id", default="")
_VARS = (("call_sid", call_sid), ("stream_sid", stream_sid), ("agent_id", agent_id))

#: LogRecord attributes that are not user "extra" fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", *dict(_VARS)}


def bind(*, call: str = "", stream: str = "", agent: str = "") -> None:
    """Bind the call context in the current context (the caller's task and the tasks it creates)."""
    call_sid.set(call)
    stream_sid.set(stream)
    agent_id.set(agent)


@contextlib.contextmanager
def bound(*, call: str = "", stream: str = "", agent: str = "") -> Iterator[None]:
    """Bind for the duration of a block, restoring the previous values afterwards."""
    tokens = [call_sid.set(call), stream_sid.set(stream), agent_id.set(agent)]
    try:
        yield
    finally:
        for (_, var), token in zip(_VARS, tokens, strict=True):
            var.reset(token)


class CallContextFilter(logging.Filter):
    """Copies the bound call context onto every record (empty strings when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS:
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


# ---- what must never reach a log line as written ------------------------------
#: ``scheme://user:password@`` (a Redis or proxy URL with its credentials).
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/@:]*)(?::([^\s/@]*))?@")
#: C0/C1 controls and the Unicode line separators: a forged ``streamSid`` or call parameter must not start a
#: fake log line or drive the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SECRETS: set[str] = set()


def mask_url(url: str) -> str:
    """``url`` with its password (or a lone user part, often a token) replaced by ``***``."""

    def mask(m: re.Match[str]) -> str:
        scheme, user, password = m.group(1), m.group(2), m.group(3)
        if password is None:
            return f"{scheme}***@" if user else m.group(0)
        return f"{scheme}{user}:***@"

    return _URL_CREDENTIALS.sub(mask, url)


def add_secrets(*values: str | None) -> None:
    """Values (API keys, auth tokens, passwords) that every formatter replaces by ``***``; short ones are ignored."""
    _SECRETS.update(v for v in values if v and len(v) >= 6)


def escape_control(text: str) -> str:
    """Control characters as visible escapes (``\\n``, ``\\x1b``): one record stays one line."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def redact(text: str) -> str:
    """URL credentials masked and registered secrets replaced."""
    text = mask_url(text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def transcript(text: str, enabled: bool) -> str:
    """What a caller said, for a log line: quoted when ``VOICEGW_LOG_TRANSCRIPTS=1``, else only its length."""
    return repr(text) if enabled else f"<{len(text)} characters; VOICEGW_LOG_TRANSCRIPTS=1 logs them>"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = escape_control(redact(record.message))  # the traceback, added after, keeps its lines
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))  # the traceback too
        ctx = " ".join(
            f"{short}={getattr(record, name)}"
            for short, name in (("call", "call_sid"), ("stream", "stream_sid"), ("agent", "agent_id"))
            if getattr(record, name, "")
        )
        return f"{line} [{ctx}]" if ctx else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, call context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),  # JSON escapes control characters itself
        }
        for name, _ in _VARS:
            value = getattr(record, name, "")
            if value:
                out[name] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(level: str = "INFO", json_lines: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones from this function)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(CallContextFilter())
    handler.set_name("voicegw")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "voicegw"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# ---- call summary ----------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 1)


TURN_STAGES = ("endpoint_wait", "recognition", "logic_first", "first_audio", "first_heard")


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """Where the time went in one answered caller turn (issue 13): the typed per-turn record.

    Every field but ``recognition_ms`` is milliseconds after the moment the caller stopped speaking, so
    stages read as a timeline; a speculative reply can have ``logic_first_ms`` before ``endpoint_wait_ms``.
    None: the stage never happened (no audio: the reply was empty or interrupted first).
    """

    turn: int
    why: str  # the turn-end rule that fired: complete, model_unsure, max_silence
    speculative: bool  # the reply was prepared before the turn was confirmed (audio held until then)
    endpoint_wait_ms: float  # caller stopped → the turn was declared over
    recognition_ms: float  # recogniser compute time for the words answered (done before the turn ended if speculative)
    logic_first_ms: float | None = None  # → the agent logic's first output (token or phrase)
    first_audio_ms: float | None = None  # → the reply's first frame ready to send (released, if held)
    first_heard_ms: float | None = None  # → the reply's first frame played at the caller (mouth-to-ear)

    def stage_ms(self, stage: str) -> float | None:
        value: float | None = getattr(self, f"{stage}_ms")
        return value


@dataclass(frozen=True, slots=True)
class CallSummary:
    call_sid: str
    agent_id: str
    outcome: str
    duration_s: float
    turns: int
    sentences: Mapping[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    first_audio_p50_ms: float | None = None
    first_audio_p95_ms: float | None = None
    mouth_to_ear_p50_ms: float | None = None
    mouth_to_ear_p95_ms: float | None = None
    underruns: int = 0
    frames_sent: int = 0
    turn_latency: tuple[TurnLatency, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        call_sid: str,
        agent_id: str,
        outcome: str,
        duration_s: float,
        turns: int,
        providers: Sequence[str] = (),
        fallbacks: int = 0,
        first_audio_s: Sequence[float] = (),
        mouth_to_ear_s: Sequence[float] = (),
        underruns: int = 0,
        frames_sent: int = 0,
        turn_latency: Sequence[TurnLatency] = (),
    ) -> CallSummary:
        """From raw per-call observations: ``providers`` has one entry per sentence spoken."""
        counts: dict[str, int] = {}
        for p in providers:
            counts[p] = counts.get(p, 0) + 1
        return cls(
            call_sid=call_sid, agent_id=agent_id, outcome=outcome, duration_s=round(duration_s, 2), turns=turns,
            sentences=dict(sorted(counts.items())), fallbacks=fallbacks,
            first_audio_p50_ms=_ms(percentile(first_audio_s, 50)),
            first_audio_p95_ms=_ms(percentile(first_audio_s, 95)),
            mouth_to_ear_p50_ms=_ms(percentile(mouth_to_ear_s, 50)),
            mouth_to_ear_p95_ms=_ms(percentile(mouth_to_ear_s, 95)),
            underruns=underruns, frames_sent=frames_sent, turn_latency=tuple(turn_latency),
        )

    def stage_p50_ms(self, stage: str) -> float | None:
        """Median of one :data:`TURN_STAGES` stage over the call's answered turns."""
        values = [v for t in self.turn_latency if (v := t.stage_ms(stage)) is not None]
        p = percentile(values, 50)
        return None if p is None else round(p, 1)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sentences"] = dict(self.sentences)
        out["turn_latency"] = [asdict(t) for t in self.turn_latency]
        return out

    def line(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.0f}"

        sentences = ",".join(f"{k}:{v}" for k, v in self.sentences.items()) or "none"
        return (
            f"call summary: outcome={self.outcome} duration_s={self.duration_s:.1f} turns={self.turns} "
            f"sentences={sentences} fallbacks={self.fallbacks} "
            f"first_audio_ms_p50={ms(self.first_audio_p50_ms)} first_audio_ms_p95={ms(self.first_audio_p95_ms)} "
            f"mouth_to_ear_ms_p50={ms(self.mouth_to_ear_p50_ms)} mouth_to_ear_ms_p95={ms(self.mouth_to_ear_p95_ms)} "
            f"underruns={self.underruns} frames_sent={self.frames_sent} "
            f"turn_ms_p50={','.join(f'{st}:{ms(self.stage_p50_ms(st))}' for st in TURN_STAGES)}"
        )

    def log(self, logger: logging.Logger) -> None:
        """One INFO line; under the JSON formatter the fields also appear as ``summary``."""
        logger.info(self.line(), extra={"summary": self.as_dict()})
