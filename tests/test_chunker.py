"""Streaming sentence chunker: early first clause, no false splits, tokenization-invariant."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.chunker import SentenceChunker


def chunk(text: str, **kw: int) -> list[str]:
    c = SentenceChunker(**kw)
    return c.feed(text) + c.flush()


def test_first_clause_then_whole_sentences() -> None:
    text = "Sure, I can help with that. We are open from nine to five. Anything else?"
    assert chunk(text) == ["Sure,", "I can help with that.", "We are open from nine to five.", "Anything else?"]


def test_first_piece_cut_after_a_few_words_when_no_punctuation() -> None:
    text = "Our office on Main Street opens every weekday morning at nine and closes at five."
    pieces = chunk(text, first_max_words=6)
    assert pieces[0] == "Our office on Main Street opens"
    assert pieces[1:] == ["every weekday morning at nine and closes at five."]


def test_only_the_first_clause_of_a_turn_is_released_early() -> None:
    c = SentenceChunker()
    assert c.feed("Well, first, ") == ["Well,"]
    assert c.feed("you need a ticket, then a seat. ") == []  # waits for the next word's case
    assert c.feed("OK?") == ["first, you need a ticket, then a seat."]
    assert c.flush() == ["OK?"]
    # flush ended the turn: the next turn releases its first clause early again
    assert c.feed("Yes, ") == ["Yes,"]


def test_no_false_splits() -> None:
    cases = [
        "Dr. Smith will see you at 3.30 today.",
        "Bring an ID, e.g. a passport or a licence.",
        "Our team in the U.S. Army office is ready.",
        "Write to john.doe@example.com or visit https://example.com/help?x=1.",
        "Well... I think that is right.",
        "The price is $4.99 per month, i.e. about 60 a year.",
        "J. R. Smith wrote it, approx. three pages.",
        "Call room No. 5 now.",
    ]
    for text in cases:
        pieces = chunk(text, first_max_words=100)
        assert len(pieces) <= 2, pieces
        joined = " ".join(pieces)
        assert joined == text
        if len(pieces) == 2:  # only the early first clause may split, and only at a comma
            assert pieces[0].endswith(","), pieces


def test_real_sentence_ends_split() -> None:
    assert chunk("It is 5 p.m. Please call back. Thanks!", first_max_words=100) == [
        "It is 5 p.m.", "Please call back.", "Thanks!"
    ]
    assert chunk('He said "stop." Then he left.', first_max_words=100) == ['He said "stop."', "Then he left."]
    assert chunk("Is it open? Yes! It is.", first_max_words=100) == ["Is it open?", "Yes!", "It is."]


def test_run_on_sentence_is_capped() -> None:
    text = " ".join(["word"] * 120)
    pieces = chunk(text, first_max_words=100)
    assert all(len(p) <= 270 for p in pieces)
    assert " ".join(pieces) == text


def test_waits_for_lookahead_before_deciding() -> None:
    c = SentenceChunker(first_max_words=100)
    assert c.feed("Hello there.") == []  # "." might be the start of "..." or a decimal
    assert c.feed(" ") == []  # next word's case decides
    assert c.feed("How") == ["Hello there."]


# ---- property: same pieces whatever the tokenization ---------------------------------------------------------

WORDS = [
    "Hello", "there", "Dr.", "Smith", "e.g.", "i.e.", "U.S.", "3.30", "4.99", "Yes,", "no.", "OK.", "Well...",
    "really?", "great!", "john.doe@example.com", "https://example.com/a?b=c.", "approx.", "J.", "(see", "it).",
    '"quoted."', "No.", "5", "1,000", "and", "the", "call", "back", "Friday.", "then;", "note:", "…", "a.m.",
]


@st.composite
def text_and_cuts(draw: st.DrawFn) -> tuple[str, list[int]]:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=40))
    seps = draw(st.lists(st.sampled_from([" ", " ", " ", "  ", "\n"]), min_size=len(words), max_size=len(words)))
    text = "".join(w + s for w, s in zip(words, seps, strict=True)).rstrip()
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=30))))
    return text, cuts


@settings(max_examples=400, deadline=None)
@given(text_and_cuts(), st.integers(2, 10))
def test_same_pieces_whatever_the_tokenization(tc: tuple[str, list[int]], first_words: int) -> None:
    text, cuts = tc
    whole = chunk(text, first_max_words=first_words)
    c = SentenceChunker(first_max_words=first_words)
    streamed: list[str] = []
    prev = 0
    for cut in [*cuts, len(text)]:
        streamed += c.feed(text[prev:cut])
        prev = cut
    streamed += c.flush()
    assert streamed == whole
    # nothing lost, nothing invented, no empty pieces
    assert all(p and p == p.strip() for p in whole)
    assert re.sub(r"\s+", "", "".join(whole)) == re.sub(r"\s+", "", text)
