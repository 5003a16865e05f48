"""Load the committed caller-speech fixtures (8 kHz mu-law .ul + transcripts.json)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "speech"


def transcripts() -> dict[str, str]:
    meta = json.loads((FIXTURES / "transcripts.json").read_text())
    return {name: str(info["text"]) for name, info in meta.items()}


def mulaw(name: str) -> bytes:
    return (FIXTURES / f"{name}.ul").read_bytes()


CONVERSATION = Path(__file__).resolve().parent / "fixtures" / "conversation"


def conversation_fixtures() -> dict[str, dict[str, object]]:
    """Realistic bench fixtures (line noise + hum at 25–30 dB, mid-sentence pauses, a cough): name → metadata."""
    meta: dict[str, dict[str, object]] = json.loads((CONVERSATION / "transcripts.json").read_text())
    return meta


def conversation_mulaw(name: str) -> bytes:
    return (CONVERSATION / f"{name}.ul").read_bytes()
