"""Streaming sentence chunker: reply text deltas in, speakable pieces out.

Rules of this file: sans-I/O and pure. ``feed(delta) -> list[str]`` and
``flush() -> list[str]`` (end of the turn; the next feed starts a new turn).

Why our own: NLTK/sentencex segment finished text; a streaming chunker must
decide *while text arrives* and must give the same pieces however the text is
tokenized. Every split decision here looks only at the text up to a bounded
lookahead (the next non-space character at most) and waits when that
lookahead has not arrived yet, so the pieces are a function of the full text
alone (the property tests feed random token boundaries).

Pieces:
- The first piece of a turn is released early so synthesis starts at once: at
  the first ``,``/``;``/``:`` followed by a space, or after ``first_max_words``
  words, whichever comes first.
- Then whole sentences: ``.``/``!``/``?`` (with closing quotes/brackets)
  followed by whitespace. No split inside decimals, emails or URLs (no space
  follows the dot), after ellipses, after known abbreviations (Dr., e.g., vs.),
  uppercase initials and initialisms (J., U.S.), or when the next word starts
  lowercase (an unknown abbreviation, e.g. "approx. three").
- A run-on sentence is cut at a comma after ``soft_max_chars`` or at a space
  after ``hard_max_chars``, so one piece never holds synthesis back too long.
"""

from __future__ import annotations

import re

TERMINATORS = ".!?…"
CLOSERS = "\"')]}”’»"
CLAUSE = ",;:"
#: Abbreviations after which a period never ends a sentence (lowercase, without the final dot).
NEVER_SPLIT = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "cf", "mt", "ft", "approx",
    "dept", "est", "fig", "gen", "gov", "hon", "lt", "col", "capt", "sgt", "rev", "ave", "blvd", "apt",
    "no", "nos", "tel", "ext",
})
#: Words that are also abbreviations above but commonly end a sentence: split when the next word is capitalized.
AMBIGUOUS = frozenset({"no", "st"})
INITIALISM = re.compile(r"(?:[A-Z]\.)*[A-Z]")

_UNDECIDED = None


class SentenceChunker:
    def __init__(self, first_max_words: int = 8, soft_max_chars: int = 160, hard_max_chars: int = 260) -> None:
        self.first_max_words = first_max_words
        self.soft_max_chars = soft_max_chars
        self.hard_max_chars = hard_max_chars
        self._buf = ""
        self._first = True

    def feed(self, delta: str) -> list[str]:
        self._buf += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of turn: release everything left; the next feed starts a new turn."""
        out = self._drain(final=True)
        self._buf = ""
        self._first = True
        return out

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while self._buf:
            cut = self._next_split(self._buf, final)
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                out.append(piece)
                self._first = False
        return out

    def _next_split(self, buf: str, final: bool) -> int | None:
        n = len(buf)
        i = 0
        words = 0
        in_word = False
        last_token_dot = False
        while i < n:
            c = buf[i]
            if c.isspace():
                if in_word:
                    words += 1
                    in_word = False
                    if self._first and words >= self.first_max_words and not last_token_dot:
                        return i
                    if i >= self.hard_max_chars:
                        return i
                i += 1
                continue
            in_word = True
            if c in TERMINATORS:
                j = i
                while j < n and (buf[j] in TERMINATORS or buf[j] in CLOSERS):
                    j += 1
                if j == n:
                    return n if final else _UNDECIDED
                last_token_dot = True
                if not buf[j].isspace():
                    i = j
                    continue
                decision = self._sentence_end(buf, i, j, final)
                if decision is None:
                    return _UNDECIDED
                if decision:
                    return j
                i = j
                continue
            last_token_dot = False
            if c in CLAUSE and (self._first or i >= self.soft_max_chars):
                if i + 1 == n:
                    return n if final else _UNDECIDED
                if buf[i + 1].isspace():
                    return i + 1
            i += 1
        return n if final else _UNDECIDED

    @staticmethod
    def _sentence_end(buf: str, i: int, j: int, final: bool) -> bool | None:
        """Does the terminator run ``buf[i:j]`` (followed by whitespace) end a sentence? None: need more text."""
        run = buf[i:j]
        if "…" in run or "..." in run:
            return False
        if "!" in run or "?" in run:
            return True
        start = i
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        token = buf[start:i].lstrip("\"'([{“‘«")
        low = token.lower()
        if low in NEVER_SPLIT and low not in AMBIGUOUS:
            return False
        if INITIALISM.fullmatch(token):
            return False
        k = j
        while k < len(buf) and buf[k].isspace():
            k += 1
        if k == len(buf):
            return True if final else None
        nxt = buf[k]
        if nxt.islower():
            return False
        if low in AMBIGUOUS and nxt.isdigit():
            return False  # "No. 5", "St. 12"
        return True
