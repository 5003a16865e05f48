"""End of turn from more than silence: the words so far, an optional audio turn model, and a maximum silence.

Rules of this file: pure, no I/O, no clocks (silence durations come in as
arguments, in seconds of stream time), no audio. The conversation runner asks
:func:`decide` each time something changes (a speculative transcript arrived,
the turn model scored, more silence went by) and acts on the answer.

The rule (issue 13, turn-taking notes):
- Until ``speculative_s`` of silence nothing is decided (the caller is
  mid-word). At ``speculative_s`` the runner decodes what it has.
- No words yet (recognition still running) → wait for them (up to the maximum).
- Words that end mid-clause (a trailing filler, conjunction, preposition,
  article, possessive, "I"/"to be" auxiliary, or a comma/ellipsis) → wait up
  to ``max_silence_s``: a caller who pauses to think is never cut off.
- Words that look complete → the turn is *likely* over: the runner starts the
  reply with its audio held; at ``complete_s`` the turn ends and the audio is
  released (a comma pause is 0.2–0.45 s: the caller usually goes on before).
  A question (recognised with a question mark) ends sooner, at ``question_s``:
  callers rarely go on after one, and questions are most of what they ask.
  If an audio turn model is in use and scores the audio below its threshold,
  the turn ends at ``unsure_s`` instead — and so do one- or two-word
  statements ("No.", "Wait."): they open many longer sentences ("No, I said
  the second option…", "Wait, stop, I have a question…"); a short question
  ("Why?") still ends at ``complete_s``.
- ``max_silence_s`` of silence always ends the turn.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from agents.spec import TurnTaking

FILLERS = frozenset({"um", "umm", "uh", "uhh", "er", "erm", "hmm", "mm", "ah", "like"})
CONJUNCTIONS = frozenset({
    "and", "but", "or", "so", "because", "cause", "cuz", "that", "which", "who", "if", "when", "then", "than",
    "while", "although", "though", "unless", "until", "whether", "where", "since", "also", "plus",
})
PREPOSITIONS = frozenset({
    "about", "for", "to", "of", "in", "on", "at", "with", "from", "by", "into", "onto", "regarding", "after",
    "before", "between", "through", "over", "under", "without", "like", "as", "per", "via", "towards", "toward",
})
DETERMINERS = frozenset({
    "a", "an", "the", "my", "your", "our", "his", "her", "their", "its", "this", "these", "those", "some", "any",
    "another", "each", "every", "no",
})
AUXILIARIES = frozenset({
    "i", "i'm", "im", "i've", "i'd", "i'll", "we", "we're", "you're", "it's", "is", "am", "are", "was", "were",
    "be", "been", "have", "has", "had", "do", "does", "did", "can", "could", "would", "should", "will", "want",
    "need", "just", "really", "very",
})
# Whisper writes a dangling "to" as "too" when the audio stops after it ("I need to change my appointment too."
# for "...appointment to — three thirty", seen live in bench/conversation.py): a sentence that really ends in
# "too" waits for the maximum silence, which is slower but never cuts a caller off.
HOMOPHONES = frozenset({"too"})
MID_CLAUSE = FILLERS | CONJUNCTIONS | PREPOSITIONS | DETERMINERS | AUXILIARIES | HOMOPHONES
# "please" ends many complete requests: never treat it as mid-clause.
COMPLETE_LAST = frozenset({"please", "thanks", "you", "it", "that", "this", "yes", "no", "okay", "ok"})
_WORD = re.compile(r"[a-z0-9']+")
SHORT_WORDS = 2  # statements this short wait for unsure_s: the caller often goes on


def last_word(text: str) -> str:
    found = _WORD.findall(text.lower())
    return found[-1] if found else ""


def ends_mid_clause(text: str) -> bool:
    """Does this transcript stop in the middle of a clause ("I am calling about my", "the refund and, um,")?"""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped.endswith((",", "...", "…", "-", "–", "—", ";", ":")):
        return True
    word = last_word(stripped)
    if not word:
        return False
    if stripped.endswith(("?", "!")):
        return False  # a question or exclamation is complete whatever its last word
    if word in COMPLETE_LAST and word not in FILLERS:
        return False
    return word in MID_CLAUSE


class Decision(enum.Enum):
    WAIT = "wait"  # keep listening
    LIKELY = "likely"  # probably over: prepare the reply, hold its audio
    END = "end"  # the turn is over: answer (release the held reply)


@dataclass(frozen=True, slots=True)
class TurnEndConfig:
    speculative_s: float = 0.2  # decode (and start the reply, audio held) at this much silence
    question_s: float = 0.3  # a complete question ends the turn here
    complete_s: float = 0.45  # complete-looking words end the turn here
    unsure_s: float = 0.8  # ... or here when the audio turn model is unsure
    max_silence_s: float = 1.5  # always end here (mid-clause pauses wait this long)
    model_threshold: float = 0.5  # audio turn model probability that counts as "complete"

    def __post_init__(self) -> None:
        if not 0 < self.speculative_s <= self.question_s <= self.complete_s <= self.unsure_s <= self.max_silence_s:
            raise ValueError(
                f"turn end silences must satisfy 0 < speculative ({self.speculative_s}) <= question "
                f"({self.question_s}) <= complete ({self.complete_s}) <= unsure ({self.unsure_s}) "
                f"<= max ({self.max_silence_s})"
            )

    @classmethod
    def from_turn_taking(cls, tt: TurnTaking) -> TurnEndConfig:
        complete = tt.end_of_utterance_silence_ms / 1000.0
        max_s = tt.max_silence_ms / 1000.0
        return cls(speculative_s=tt.speculative_silence_ms / 1000.0, question_s=tt.question_silence_ms / 1000.0,
                   complete_s=complete,
                   unsure_s=min(max_s, max(complete, 0.8)), max_silence_s=max_s,
                   model_threshold=tt.turn_model_threshold)


@dataclass(frozen=True, slots=True)
class TurnEndView:
    """What is known about the current pause."""

    silence_s: float  # stream seconds since the caller's last voiced chunk
    words: str | None  # transcript of the utterance so far; None = not recognised yet
    model_score: float | None = None  # audio turn model P(complete); None = no model / not scored


def decide(cfg: TurnEndConfig, view: TurnEndView) -> tuple[Decision, str]:
    """The decision and its reason (for logs and the per-turn record)."""
    if view.silence_s >= cfg.max_silence_s:
        return Decision.END, "max_silence"
    if view.silence_s < cfg.speculative_s:
        return Decision.WAIT, "speaking"
    if view.words is None:
        return Decision.WAIT, "recognising"
    if not view.words.strip():
        return Decision.WAIT, "no_words"  # noise: the runner drops it; a real pause waits for max_silence
    if ends_mid_clause(view.words):
        return Decision.WAIT, "mid_clause"
    if len(_WORD.findall(view.words.lower())) <= SHORT_WORDS and not view.words.rstrip().endswith("?"):
        if view.silence_s < cfg.unsure_s:
            return Decision.LIKELY, "short"
        return Decision.END, "short"
    if view.words.rstrip().endswith("?") and view.silence_s >= cfg.question_s:
        return Decision.END, "question"
    if view.model_score is not None and view.model_score < cfg.model_threshold:
        if view.silence_s < cfg.unsure_s:
            return Decision.LIKELY, "model_unsure"
        return Decision.END, "model_unsure"
    if view.silence_s < cfg.complete_s:
        return Decision.LIKELY, "complete"
    return Decision.END, "complete"


def wait_left(cfg: TurnEndConfig, view: TurnEndView) -> float | None:
    """Seconds of further silence after which :func:`decide` could change its mind (None: only new input can)."""
    if decide(cfg, view)[0] is Decision.END:
        return 0.0
    marks = [cfg.speculative_s, cfg.question_s, cfg.complete_s, cfg.unsure_s, cfg.max_silence_s]
    later = [m - view.silence_s for m in marks if m > view.silence_s]
    return min(later) if later else None


BACKCHANNELS = frozenset({
    "mm", "mmhm", "mm-hm", "mhm", "uh-huh", "uhhuh", "hmm", "yeah", "yep", "yes", "ok", "okay", "right", "sure",
    "uh", "um", "ah", "oh", "i see", "got it", "alright", "all right",
})


def is_backchannel(text: str) -> bool:
    """A listener noise said over the agent ("mm-hm", "okay", "right"): not a request to stop."""
    norm = " ".join(_WORD.findall(text.lower().replace("-", "")))
    if not norm:
        return True  # noise or a cough transcribed as punctuation
    return norm in {b.replace("-", "") for b in BACKCHANNELS} or all(
        w in {"mm", "mmhm", "mhm", "uhhuh", "hmm", "yeah", "okay", "ok", "right", "uh", "um"} for w in norm.split()
    )
