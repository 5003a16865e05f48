"""ChatTTS voices: the eight stored presets and operator-supplied speaker strings.

Rules of this file: no torch at run time. A ChatTTS speaker is a string
(base16384 of an LZMA-compressed float16 vector, one value per GPT hidden
unit). The presets live in ``tts/data/chattts_voices.json``; they were made
once by ``scripts/make_chattts_voices.py`` (:func:`make_voice`, CPU, fixed
seeds, from the package's own ``spk_stat``) and are never regenerated at run
time: ``sample_random_speaker()`` draws from the model device's RNG, so the
same seed gives a different voice on CUDA than on CPU.
"""

from __future__ import annotations

import json
import lzma
from functools import lru_cache
from importlib import resources

import numpy as np

from tts.settings import CHATTTS_PRESETS, ChatTTSVoice

__all__ = ["PRESETS", "VoiceError", "load_presets", "make_voice", "resolve_speaker", "speaker_dim"]

PRESETS = CHATTTS_PRESETS
_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


class VoiceError(ValueError):
    """A speaker string is malformed or does not fit the loaded model."""


@lru_cache(maxsize=1)
def load_presets() -> dict[str, str]:
    """Preset name → speaker string, from the package data file."""
    raw = resources.files("tts").joinpath("data/chattts_voices.json").read_text(encoding="utf-8")
    voices: dict[str, str] = json.loads(raw)["voices"]
    missing = [p for p in PRESETS if p not in voices]
    if missing:
        raise VoiceError(f"chattts_voices.json lacks presets: {', '.join(missing)}")
    return voices


@lru_cache(maxsize=256)
def speaker_dim(speaker: str) -> int:
    """Number of values in a speaker string (must equal the model's hidden size: 768 for the real model)."""
    import pybase16384 as b14

    try:
        raw = lzma.decompress(b14.decode_from_string(speaker), format=lzma.FORMAT_RAW, filters=_FILTERS)
    except Exception as exc:  # base16384/lzma raise assorted types on garbage
        raise VoiceError(f"not a ChatTTS speaker string ({type(exc).__name__})") from exc
    values = np.frombuffer(raw, dtype=np.float16)
    if len(raw) % 2 or not np.isfinite(values).all():
        raise VoiceError("not a ChatTTS speaker string (bad payload)")
    return int(values.size)


def resolve_speaker(settings: ChatTTSVoice, presets: dict[str, str], dim: int) -> str:
    """The speaker string for a request's ``ChatTTSVoice`` settings (custom ``speaker`` wins over ``voice``)."""
    if settings.speaker:
        speaker, label = settings.speaker.strip(), "custom speaker"
    else:
        name = settings.voice
        if name not in presets:
            raise VoiceError(f"unknown ChatTTS voice {name!r} (presets: {', '.join(PRESETS)})")
        speaker, label = presets[name], f"voice {name}"
    got = speaker_dim(speaker)
    if got != dim:
        raise VoiceError(f"{label} has {got} values but the loaded model needs {dim}")
    return speaker


def make_voice(spk_stat: str, seed: int) -> str:
    """One speaker drawn from ``spk_stat`` (std then mean, float16) with a CPU generator: reproducible anywhere."""
    import pybase16384 as b14
    import torch

    stat = torch.from_numpy(np.frombuffer(b14.decode_from_string(spk_stat), dtype=np.float16).copy())
    std, mean = stat.chunk(2)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    spk = torch.randn(std.numel(), generator=gen, dtype=torch.float32).to(torch.float16).mul_(std).add_(mean)
    raw = lzma.compress(spk.numpy().tobytes(), format=lzma.FORMAT_RAW, filters=_FILTERS)
    return str(b14.encode_to_string(raw))
