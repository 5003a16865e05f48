"""Word error rate with a small, explicit text normaliser.

Rules of this file: pure. Both sides are lowercased, stripped of punctuation,
contractions expanded (``what's`` → ``what is``) and numbers spelled out
(``3.30`` → ``three thirty``, digit strings of 4+ digits read digit by digit
like account numbers), so the score counts recognition errors, not formatting.
"""

from __future__ import annotations

import re

from num2words import num2words

CONTRACTIONS = {"what's": "what is", "where's": "where is", "that's": "that is", "it's": "it is",
                "i'm": "i am", "don't": "do not", "can't": "can not", "i'd": "i would", "we're": "we are"}
DIGITS = "zero one two three four five six seven eight nine".split()


def _number(token: str) -> str:
    groups = re.split(r"[.:,]", token)
    out = []
    for g in groups:
        if not g:
            continue
        out.append(" ".join(DIGITS[int(d)] for d in g) if len(g) >= 4 else num2words(int(g)))
    return " ".join(out)


def normalize(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    for short, full in CONTRACTIONS.items():
        text = text.replace(short, full)
    text = re.sub(r"\d+(?:[.:,]\d+)*", lambda m: " " + _number(m.group()) + " ", text)
    text = text.replace("-", " ")
    return re.findall(r"[a-z']+", text)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(word errors, reference words)."""
    r, h = normalize(ref), normalize(hyp)
    return edit_distance(r, h), len(r)
