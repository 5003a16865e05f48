"""Named voices (presets) across engines, and where a preset cannot be honoured.

A preset (``female_1`` … ``neutral_2``, :data:`tts.settings.CHATTTS_PRESETS`) is
a ChatTTS speaker; when ChatTTS cannot speak, the fallback engines speak the
voice ``tts/data/voices.json`` (or ``VOICEGW_VOICES_FILE``) maps it to. A
preset's name promises a kind of voice (its prefix); a fallback voice that is
not of that kind is reported (:func:`caveats`): at startup, in the speech
API's ``X-TTS-Voice-Caveat`` header and ``/v1/voices``, and by ``voicegw say``.
Never silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tts.piper import voice_gender
from tts.registry import TTSConfigBase
from tts.settings import CHATTTS_PRESETS, ChatTTSVoice, PiperVoice, cartesia_voice_id, preset_gender


@dataclass(frozen=True, slots=True)
class PresetVoices:
    """The voices that speak one preset on each fallback engine."""

    cartesia: str
    piper: str


def load_voice_map(path: Path | None = None) -> dict[str, PresetVoices]:
    """Preset → fallback voices; raises ValueError naming the file, preset and what is wrong."""
    where = str(path) if path else "voices.json"
    raw = path.read_text() if path else resources.files("tts").joinpath("data/voices.json").read_text()
    data = json.loads(raw)
    out: dict[str, PresetVoices] = {}
    for preset in CHATTTS_PRESETS:
        entry = data.get(preset)
        if not isinstance(entry, dict) or not entry.get("cartesia") or not entry.get("piper"):
            raise ValueError(f"{where}: {preset}: needs 'cartesia' and 'piper' voices")
        try:
            cartesia_voice_id(str(entry["cartesia"]))
        except ValueError as exc:
            raise ValueError(f"{where}: {preset}: cartesia: {exc}") from exc
        out[preset] = PresetVoices(cartesia=str(entry["cartesia"]), piper=str(entry["piper"]))
    return out


def caveats(voices: dict[str, PresetVoices]) -> dict[tuple[str, str], str]:
    """``(preset, engine)`` → why that engine's voice for the preset is not what the preset's name says.

    Piper: the voice's gender (:data:`tts.piper.BUNDLED`) must be the preset's; a voice given by path has
    no known gender. Cartesia: presets of different kinds must not share one voice id.
    """
    out: dict[tuple[str, str], str] = {}
    for preset, v in voices.items():
        want = preset_gender(preset)
        if (why := _piper_caveat(preset, v.piper)) is not None:
            out[(preset, "piper")] = why
        shared = [p for p, o in voices.items() if o.cartesia == v.cartesia and preset_gender(p) != want]
        if shared:
            out[(preset, "cartesia")] = (f"cartesia voice {v.cartesia} also speaks {', '.join(shared)}: "
                                         f"set your own voice ids (VOICEGW_VOICES_FILE)")
    return out


def agent_caveat(config: TTSConfigBase, provider: str) -> str | None:
    """Why ``provider``'s voice is not the kind of voice the agent's ChatTTS preset promises, or None."""
    if provider != "piper" or "chattts" not in config.chain():
        return None
    chattts = config.section("chattts")
    piper = config.section("piper")
    assert isinstance(chattts, ChatTTSVoice) and isinstance(piper, PiperVoice)
    if chattts.speaker:
        return None  # a custom speaker promises no kind of voice
    return _piper_caveat(chattts.voice, piper.voice)


def _piper_caveat(preset: str, voice: str) -> str | None:
    want, got = preset_gender(preset), voice_gender(voice)
    if got == want:
        return None
    return f"piper has no {want} voice here: {preset} is spoken by {voice} ({got or 'voice of unknown kind'})"
