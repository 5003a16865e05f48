"""Voice settings: what an agent (or a speech API request) may ask of each speech engine.

Rules of this file: pure pydantic models, no I/O. Each engine's settings model
is defined here exactly once, with its defaults and ranges; everything else
derives from these definitions:

* the agent spec's ``tts`` section (:data:`tts.registry.TTSConfig`, one section
  per registered engine, named after it);
* the speech API's request model (``gateway.speech_api.SpeechRequest`` copies
  the ChatTTS fields, ranges and defaults from :class:`ChatTTSVoice`);
* the engines, which receive their own model, typed, in
  :attr:`tts.base.SynthesisRequest.settings`.

A range is a :class:`Range`: one object gives the validator (message
``5.0 is not within 0.5–2.0``), the JSON-schema bounds and ``clamp``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ChatTTSPreset = Literal[
    "female_1", "female_2", "female_3", "male_1", "male_2", "male_3", "neutral_1", "neutral_2"
]
#: The eight named voices, in order (derived from :data:`ChatTTSPreset`, never written twice).
CHATTTS_PRESETS: tuple[str, ...] = get_args(ChatTTSPreset)
#: A preset's name says which voice it promises: its prefix (``female``, ``male``, ``neutral``).
Gender = Literal["female", "male", "neutral"]


def preset_gender(preset: str) -> Gender:
    """``female_2`` → ``female``."""
    g = preset.rsplit("_", 1)[0]
    if g not in get_args(Gender):
        raise ValueError(f"{preset!r} is not a preset name")
    return g  # type: ignore[return-value]


def _fmt(x: float) -> str:
    return str(x)


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive numeric range, the single definition of a setting's bounds."""

    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{_fmt(self.lo)}–{_fmt(self.hi)}"

    def contains(self, v: float) -> bool:
        # an int is compared exactly (math.isnan would convert it: OverflowError beyond a float's range)
        return not (isinstance(v, float) and math.isnan(v)) and self.lo <= v <= self.hi

    def clamp(self, v: float) -> float:
        return min(self.hi, max(self.lo, v))

    def check(self, v: float) -> float:
        if isinstance(v, float) and math.isnan(v):
            raise ValueError(f"must be a number within {self}, not NaN")
        if not self.contains(v):
            raise ValueError(f"{v!r} is not within {self}")
        return v

    def validator(self) -> AfterValidator:
        return AfterValidator(self.check)

    def schema(self) -> object:
        return Field(json_schema_extra={"minimum": self.lo, "maximum": self.hi})


def within(lo: float, hi: float) -> AfterValidator:
    """Range check whose message reads ``5.0 is not within 0.5–2.0``."""
    return Range(lo, hi).validator()


def Ranged(lo: float, hi: float) -> object:  # noqa: N802 - reads like a type
    return Range(lo, hi).schema()


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSettings(StrictModel):
    """Base of every engine's settings model (the agent's ``tts.<engine>`` section)."""


# ---- ChatTTS ----------------------------------------------------------------------------------------
CHATTTS_SPEED = Range(0.5, 2.0)
CHATTTS_TEMPERATURE = Range(0.1, 1.0)
CHATTTS_TOP_P = Range(0.1, 1.0)
CHATTTS_TOP_K = Range(1, 100)


class ChatTTSVoice(EngineSettings):
    """ChatTTS: the in-process GPU voice, expressive and conversational; eight voice presets (the seed's settings)."""

    voice: ChatTTSPreset = Field(default="female_1", description="One of the eight named presets.")
    speaker: str | None = Field(
        default=None, description="Custom speaker-embedding string; overrides `voice` when set."
    )
    speed: Annotated[float, CHATTTS_SPEED.validator(), CHATTTS_SPEED.schema()] = 1.0
    temperature: Annotated[float, CHATTTS_TEMPERATURE.validator(), CHATTTS_TEMPERATURE.schema()] = 0.3
    top_p: Annotated[float, CHATTTS_TOP_P.validator(), CHATTTS_TOP_P.schema()] = 0.7
    top_k: Annotated[int, CHATTTS_TOP_K.validator(), CHATTTS_TOP_K.schema()] = 20
    use_refine: bool = False
    seed: int | None = Field(default=None, description="Fixed sampling seed (reproducible voice/prosody).")


def _http_url(v: str | None) -> str | None:
    if v is not None and not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", v):
        raise ValueError(f"{v!r} is not an http(s) base URL (like http://chattts.internal:8000)")
    return v.rstrip("/") if v else v


class ChatTTSRemoteVoice(ChatTTSVoice):
    """ChatTTS on a separate speech server (a plain ChatTTS server or a voicegw speech pod), over its HTTP API."""

    url: Annotated[str | None, AfterValidator(_http_url)] = Field(
        default=None,
        description="Base URL of the ChatTTS server (POST {url}/v1/audio/speech); default CHATTTS_API_URL.",
    )


# ---- Cartesia ---------------------------------------------------------------------------------------
CARTESIA_SPEED = Range(0.6, 1.5)
#: Cartesia voice ids are UUIDs (``694f9389-aac1-45b6-b726-9d9369183238``).
CARTESIA_VOICE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CARTESIA_DEFAULT_VOICE = "694f9389-aac1-45b6-b726-9d9369183238"


def cartesia_voice_id(v: str) -> str:
    if not CARTESIA_VOICE_ID.match(v):
        raise ValueError(f"{v!r} is not a Cartesia voice id (a UUID like {CARTESIA_DEFAULT_VOICE})")
    return v


class CartesiaVoice(EngineSettings):
    """Cartesia: the hosted low-latency voice (needs CARTESIA_API_KEY); streams over one shared WebSocket."""

    voice_id: Annotated[str, AfterValidator(cartesia_voice_id)] = CARTESIA_DEFAULT_VOICE
    model_id: str = Field(default="sonic-3", min_length=1)
    speed: Annotated[float, CARTESIA_SPEED.validator(), CARTESIA_SPEED.schema()] = 1.0
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2}$",
        description="Overrides the agent's `language` for Cartesia only (unset: the agent's language).",
    )
    transport: Literal["websocket", "http"] = Field(
        default="websocket",
        description="`websocket`: one shared socket, a context per turn (lowest latency); `http`: /tts/bytes.",
    )


# ---- Piper ------------------------------------------------------------------------------------------
PIPER_SPEED = Range(0.5, 2.0)


class PiperVoice(EngineSettings):
    """Piper: the local CPU voice, always loaded, works offline; the last resort of every chain."""

    voice: str = Field(
        default="joe", min_length=1,
        description="A bundled voice name (see docs/tts-fallback.md) or a path to a Piper .onnx voice.",
    )
    speed: Annotated[float, PIPER_SPEED.validator(), PIPER_SPEED.schema()] = 1.0
