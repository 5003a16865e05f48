"""Typed agent specification: what an operator may write in ``config/agents/*.yaml``.

Rules of this file: pure models, no I/O. Every field an operator can set lives
here with its default and its range; ``voicegw agents schema`` prints the JSON
Schema generated from these models, and ``voicegw agents validate`` reports
errors as ``file: key.path: message``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

E164 = re.compile(r"^\+[1-9]\d{1,14}$")

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


def _e164(v: str) -> str:
    if not E164.match(v):
        raise ValueError(f"{v!r} is not an E.164 number (like +14155550100)")
    return v


PhoneNumber = Annotated[str, AfterValidator(_e164)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatTTSVoice(_Model):
    """ChatTTS voice settings (the seed's promise to operators)."""

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


class CartesiaVoice(_Model):
    voice_id: str = Field(default="694f9389-aac1-45b6-b726-9d9369183238", min_length=1)
    model_id: str = Field(default="sonic-3", min_length=1)
    speed: Annotated[float, within(0.6, 1.5), Ranged(0.6, 1.5)] = 1.0
    language: str = "en"
    transport: Literal["websocket", "http"] = Field(
        default="websocket",
        description="`websocket`: one shared socket, a context per turn (lowest latency); `http`: /tts/bytes.",
    )


class PiperVoice(_Model):
    voice: str = Field(default="joe", description="`joe` (bundled) or a path to a Piper .onnx voice.")
    speed: Annotated[float, within(0.5, 2.0), Ranged(0.5, 2.0)] = 1.0


class TTSConfig(_Model):
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


class Rule(_Model):
    when: list[str] | None = Field(
        default=None, description="Any of these words in the caller's utterance (case-insensitive)."
    )
    dtmf: str | None = Field(default=None, pattern=r"^[0-9*#]$")
    say: str = Field(min_length=1)
    action: Literal["hangup", "transfer"] | None = None
    transfer_to: PhoneNumber | None = None


class ScriptedLogic(_Model):
    kind: Literal["scripted"]
    rules: list[Rule] = Field(default_factory=list)
    fallback: str = "Sorry, I didn't catch that. Could you say it again?"
    goodbye: str = "Thanks for calling. Goodbye!"


class LLMLogic(_Model):
    kind: Literal["llm"]
    base_url: str = Field(min_length=1, description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    model: str = Field(min_length=1)
    system_prompt: str = "You are a helpful phone assistant. Answer briefly."
    temperature: Annotated[float, within(0.0, 2.0), Ranged(0.0, 2.0)] = 0.7
    api_key_env: str | None = Field(default=None, description="Name of the env var holding the API key.")
    max_tokens: Annotated[int, within(1, 4096), Ranged(1, 4096)] = 300
    transfer_numbers: list[PhoneNumber] = Field(
        default_factory=list,
        description="Numbers the model may transfer the caller to (the transfer tool is offered only if set).",
    )
    goodbye: str = "Thanks for calling. Goodbye!"


Logic = Annotated[ScriptedLogic | LLMLogic, Field(discriminator="kind")]


class Limits(_Model):
    max_concurrent_calls: Annotated[int, within(1, 10000), Ranged(1, 10000)] = 10
    max_call_seconds: Annotated[int, within(10, 14400), Ranged(10, 14400)] = 1800


class TurnTaking(_Model):
    barge_in_min_speech_ms: Annotated[int, within(60, 2000), Ranged(60, 2000)] = 250
    end_of_utterance_silence_ms: Annotated[int, within(100, 3000), Ranged(100, 3000)] = 500
    vad_threshold: Annotated[float, within(0.1, 0.95), Ranged(0.1, 0.95)] = 0.5
    dtmf_interrupts: bool = True
    reprompt_after_s: Annotated[float, within(1.0, 120.0), Ranged(1.0, 120.0)] = 8.0
    hangup_after_s: Annotated[float, within(2.0, 600.0), Ranged(2.0, 600.0)] = 20.0
    reprompt: str = "Are you still there?"
    apology: str = "Sorry, I'm having trouble speaking right now. Please call back later."


class AgentSpec(_Model):
    """One agent, as written in one YAML file."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Stable id, used in URLs and metrics.")
    name: str = Field(min_length=1)
    phone_numbers: list[PhoneNumber] = Field(default_factory=list)
    greeting: str = Field(min_length=1)
    language: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    logic: Logic
    tts: TTSConfig = Field(default_factory=TTSConfig)
    limits: Limits = Field(default_factory=Limits)
    turn_taking: TurnTaking = Field(default_factory=TurnTaking)
    record: bool = False
