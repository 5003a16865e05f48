"""Load the committed caller-speech fixtures (8 kHz mu-law .ul + transcripts.json)."""

from __future__ import annotations

import json
from pathlib import Path

from audio.codec import ulaw_to_float
from audio.level import rows_power_db

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "speech"


def transcripts() -> dict[str, str]:
    meta = json.loads((FIXTURES / "transcripts.json").read_text())
    return {name: str(info["text"]) for name, info in meta.items()}


def mulaw(name: str) -> bytes:
    return (FIXTURES / f"{name}.ul").read_bytes()


def speech_end_s(audio: bytes, floor_db: float = -45.0) -> float:
    """Where the last 20 ms frame above ``floor_db`` ends in 8 kHz mu-law ``audio`` (seconds from its start).
    The fixtures' trailing silence is not one exact length: hours.ul's speech ends 1.19 s before its end."""
    samples = ulaw_to_float(audio)
    frames = len(samples) // 160
    levels = rows_power_db(samples[: frames * 160].reshape(frames, 160))
    loud = [i for i, db in enumerate(levels) if db > floor_db]
    return (loud[-1] + 1) * 0.02 if loud else 0.0


CONVERSATION = Path(__file__).resolve().parent / "fixtures" / "conversation"


def conversation_fixtures() -> dict[str, dict[str, object]]:
    """Realistic bench fixtures (line noise + hum at 25–30 dB, mid-sentence pauses, a cough): name → metadata."""
    meta: dict[str, dict[str, object]] = json.loads((CONVERSATION / "transcripts.json").read_text())
    return meta


def conversation_mulaw(name: str) -> bytes:
    return (CONVERSATION / f"{name}.ul").read_bytes()
