"""Voice settings: what an agent may ask of each speech engine, with defaults and ranges.

Rules of this file: pure pydantic models, no I/O. This is the one definition of
every engine's settings: the agent spec (:mod:`agents.spec`) embeds
:class:`TTSConfig`, the speech API derives its request model from the same
fields, and the engines read them typed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Provider = Literal["chattts", "cartesia", "piper"]
ChatTTSPreset = Literal[
    "female_1", "female_2", "female_3", "male_1", "male_2", "male_3", "neutral_1", "neutral_2"
]
CHATTTS_PRESETS: tuple[str, ...] = (
    "female_1", "female_2", "female_3", "male_1", "male_2", "male_3", "neutral_1", "neutral_2",
)


def _fmt(x: float) -> str:
    return str(x)


def within(lo: float, hi: float) -> AfterValidator:
    """Range check whose message reads ``5.0 is not within 0.5–2.0``."""

    def check(v: float) -> float:
        if not lo <= v <= hi:
            raise ValueError(f"{v!r} is not within {_fmt(lo)}–{_fmt(hi)}")
        return v

    return AfterValidator(check)


def Ranged(lo: float, hi: float) -> object:  # noqa: N802 - reads like a type
    return Field(json_schema_extra={"minimum": lo, "maximum": hi})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatTTSVoice(StrictModel):
    """ChatTTS: the in-process GPU voice, expressive and conversational; eight voice presets (the seed's settings)."""

    voice: ChatTTSPreset = "female_1"
    speaker: str | None = Field(
        default=None, description="Custom speaker-embedding string; overrides `voice` when set."
    )
    speed: Annotated[float, within(0.5, 2.0), Ranged(0.5, 2.0)] = 1.0
    temperature: Annotated[float, within(0.1, 1.0), Ranged(0.1, 1.0)] = 0.3
    top_p: Annotated[float, within(0.1, 1.0), Ranged(0.1, 1.0)] = 0.7
    top_k: Annotated[int, within(1, 100), Ranged(1, 100)] = 20
    use_refine: bool = False
    seed: int | None = Field(default=None, description="Fixed sampling seed (reproducible voice/prosody).")


class CartesiaVoice(StrictModel):
    """Cartesia: the hosted low-latency voice (needs CARTESIA_API_KEY); streams over one shared WebSocket."""

    voice_id: str = Field(default="694f9389-aac1-45b6-b726-9d9369183238", min_length=1)
    model_id: str = Field(default="sonic-3", min_length=1)
    speed: Annotated[float, within(0.6, 1.5), Ranged(0.6, 1.5)] = 1.0
    language: str = "en"
    transport: Literal["websocket", "http"] = Field(
        default="websocket",
        description="`websocket`: one shared socket, a context per turn (lowest latency); `http`: /tts/bytes.",
    )


class PiperVoice(StrictModel):
    """Piper: the local CPU voice, always loaded, works offline; the last resort of every chain."""

    voice: str = Field(default="joe", description="`joe` (bundled) or a path to a Piper .onnx voice.")
    speed: Annotated[float, within(0.5, 2.0), Ranged(0.5, 2.0)] = 1.0


class TTSConfig(StrictModel):
    provider: Provider = "chattts"
    fallback: list[Provider] = Field(
        default_factory=lambda: ["cartesia", "piper"],  # type: ignore[arg-type]
        description="Providers tried in order after `provider` (duplicates and the primary are skipped).",
    )
    first_audio_budget_ms: Annotated[int, within(50, 5000), Ranged(50, 5000)] = 400
    sticky_fallback: bool = Field(
        default=False, description="Stay on the fallback voice for the rest of the call once used."
    )
    gain_db: Annotated[float, within(-20.0, 12.0), Ranged(-20.0, 12.0)] = 0.0
    chattts: ChatTTSVoice = Field(default_factory=ChatTTSVoice)
    cartesia: CartesiaVoice = Field(default_factory=CartesiaVoice)
    piper: PiperVoice = Field(default_factory=PiperVoice)

    def chain(self) -> list[str]:
        """Provider order for this agent, primary first, without duplicates."""
        out: list[str] = []
        for p in [self.provider, *self.fallback]:
            if p not in out:
                out.append(p)
        return out
