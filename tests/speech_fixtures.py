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
