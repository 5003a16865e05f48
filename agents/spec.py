"""Typed agent specification: what an operator may write in ``config/agents/*.yaml``.

Rules of this file: pure models, no I/O. Every field an operator can set lives
here with its default and its range; ``voicegw agents schema`` prints the JSON
Schema generated from these models, and ``voicegw agents validate`` reports
errors as ``file:line: key.path: message``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from tts.registry import TTSConfig
from tts.settings import Ranged, StrictModel, within

E164 = re.compile(r"^\+[1-9]\d{1,14}$")

def _e164(v: str) -> str:
    if not E164.match(v):
        raise ValueError(f"{v!r} is not an E.164 number (like +14155550100)")
    return v


PhoneNumber = Annotated[str, AfterValidator(_e164)]


class Rule(StrictModel):
    when: list[str] | None = Field(
        default=None, description="Any of these words in the caller's utterance (case-insensitive)."
    )
    dtmf: str | None = Field(default=None, pattern=r"^[0-9*#]$")
    say: str = Field(min_length=1)
    action: Literal["hangup", "transfer"] | None = None
    transfer_to: PhoneNumber | None = None


class ScriptedLogic(StrictModel):
    kind: Literal["scripted"]
    rules: list[Rule] = Field(default_factory=list)
    fallback: str = "Sorry, I didn't catch that. Could you say it again?"
    goodbye: str = "Thanks for calling. Goodbye!"


class LLMLogic(StrictModel):
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


class Limits(StrictModel):
    max_concurrent_calls: Annotated[int, within(1, 10000), Ranged(1, 10000)] = 10
    max_call_seconds: Annotated[int, within(10, 14400), Ranged(10, 14400)] = 1800


class TurnTaking(StrictModel):
    """When the caller's turn ends and when the agent stops (issue 13; see docs/conversation.md)."""

    barge_in_min_speech_ms: Annotated[int, within(60, 2000), Ranged(60, 2000)] = Field(
        default=600, description="Caller speech over the agent that confirms a barge-in without waiting for words "
        "(the agent pauses at speech onset and resumes where it stopped if it was only noise).")
    speculative_silence_ms: Annotated[int, within(100, 1000), Ranged(100, 1000)] = Field(
        default=150, description="Silence at which the caller's words are recognised and, when they look "
        "complete, the reply is prepared with its audio held until the turn ends.")
    question_silence_ms: Annotated[int, within(100, 3000), Ranged(100, 3000)] = Field(
        default=300, description="Silence that ends the turn when the caller's words are a complete question "
        "(recognised with a question mark): callers rarely go on after one.")
    end_of_utterance_silence_ms: Annotated[int, within(100, 3000), Ranged(100, 3000)] = Field(
        default=480, description="Silence that ends the turn when the caller's words look complete (a comma "
        "pause is 0.2-0.45 s; words that end mid-clause wait for max_silence_ms).")
    max_silence_ms: Annotated[int, within(300, 5000), Ranged(300, 5000)] = Field(
        default=1500, description="Silence that always ends the turn (a caller pausing mid-sentence waits this long).")
    turn_model: Literal["off", "smart_turn"] = Field(
        default="off", description="Audio end-of-turn model consulted on complete-looking words (smart_turn: "
        "Smart Turn v3.2 from the pipecat-ai wheel; off when not installed).")
    turn_model_threshold: Annotated[float, within(0.05, 0.95), Ranged(0.05, 0.95)] = 0.5
    speculative_reply: bool = Field(
        default=True, description="Start the reply at the speculative silence; its audio is released only once "
        "the turn is confirmed.")
    noise_margin_db: Annotated[float, within(0.0, 30.0), Ranged(0.0, 30.0)] = Field(
        default=3.0, description="Speech must be this far above the adaptive noise floor (0 = VAD alone).")
    vad_threshold: Annotated[float, within(0.1, 0.95), Ranged(0.1, 0.95)] = 0.5
    dtmf_interrupts: bool = True
    reprompt_after_s: Annotated[float, within(1.0, 120.0), Ranged(1.0, 120.0)] = 8.0
    hangup_after_s: Annotated[float, within(2.0, 600.0), Ranged(2.0, 600.0)] = 20.0
    reprompt: str = "Are you still there?"
    apology: str = "Sorry, I'm having trouble speaking right now. Please call back later."

    @model_validator(mode="after")
    def _silences_ordered(self) -> TurnTaking:
        if not (self.speculative_silence_ms <= self.question_silence_ms <= self.end_of_utterance_silence_ms
                <= self.max_silence_ms):
            raise ValueError(
                f"speculative_silence_ms ({self.speculative_silence_ms}) <= question_silence_ms "
                f"({self.question_silence_ms}) <= end_of_utterance_silence_ms ({self.end_of_utterance_silence_ms}) "
                f"<= max_silence_ms ({self.max_silence_ms}) must hold"
            )
        return self


class AgentSpec(StrictModel):
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
