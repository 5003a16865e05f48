"""Generate tts/data/chattts_voices.json once: the eight ChatTTS preset speakers.

Run: ``python scripts/make_chattts_voices.py`` (CPU; needs the chattts extra). The output is committed and
never regenerated at run time. Each preset is a draw from the speaker statistics shipped in the
``chattts`` package (``Config().spk_stat``) with a fixed CPU generator seed (see tts.chattts_voices.make_voice),
so rerunning it reproduces the file byte for byte.

The female/male/neutral names are a catalogue, not a measurement: they were assigned without listening
(no real weights on the build machine). Whoever auditions the presets on real weights should change SEEDS
(pick seeds whose voice fits each label), rerun, and commit the new file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tts.chattts_voices import PRESETS, make_voice, speaker_dim  # noqa: E402

SEEDS = {"female_1": 1001, "female_2": 1002, "female_3": 1003, "male_1": 2001, "male_2": 2002, "male_3": 2003,
         "neutral_1": 3001, "neutral_2": 3002}


def main() -> int:
    import ChatTTS
    import torch
    from ChatTTS.config.config import Config

    spk_stat = Config().spk_stat
    voices = {name: make_voice(spk_stat, SEEDS[name]) for name in PRESETS}
    assert all(speaker_dim(v) == 768 for v in voices.values())
    out = {
        "generator": {
            "how": "scripts/make_chattts_voices.py: randn(768, CPU generator seeded per preset) * std + mean",
            "spk_stat": "ChatTTS.config.Config().spk_stat",
            "chattts": getattr(ChatTTS, "__version__", "0.2.5"),
            "torch": torch.__version__,
            "seeds": SEEDS,
        },
        "voices": voices,
    }
    path = ROOT / "tts" / "data" / "chattts_voices.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(voices)} presets to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
