"""End-of-turn rule: words, audio model score and silence (pure, exact)."""

from __future__ import annotations

import pytest

from agents.spec import TurnTaking
from agents.turn_end import (
    Decision,
    TurnEndConfig,
    TurnEndView,
    decide,
    ends_mid_clause,
    is_backchannel,
    wait_left,
)

CFG = TurnEndConfig(speculative_s=0.2, question_s=0.25, complete_s=0.35, unsure_s=0.8, max_silence_s=1.5,
                    model_threshold=0.5)


@pytest.mark.parametrize("text", [
    "I am calling about, um,", "I am calling about.", "My account number is.", "I need to change my appointment to.",
    "the refund for my", "I want the", "and", "so I was wondering if", "Um", "I'd like", "It was...",
    "Can I talk to someone because", "I need to change my appointment too.",
])
def test_mid_clause_endings(text: str) -> None:
    assert ends_mid_clause(text)


@pytest.mark.parametrize("text", [
    "What time are you open on Saturday?", "I would like to speak to a human agent, please.", "Goodbye.",
    "My account number is 4567.", "Can you do that?", "Where is it", "yes", "No.", "", "  ", "What about?",
    "Thank you",
])
def test_complete_endings(text: str) -> None:
    assert not ends_mid_clause(text)


def test_decide_table() -> None:
    cases = [
        (TurnEndView(0.1, "Where is your office?"), Decision.WAIT, "speaking"),
        (TurnEndView(0.2, "Where is your office?"), Decision.LIKELY, "complete"),
        (TurnEndView(0.25, "Where is your office?"), Decision.END, "question"),  # a question ends sooner
        (TurnEndView(0.25, "I would like to speak to someone."), Decision.LIKELY, "complete"),
        (TurnEndView(0.35, "I would like to speak to someone."), Decision.END, "complete"),
        (TurnEndView(0.2, None), Decision.WAIT, "recognising"),
        (TurnEndView(1.0, None), Decision.WAIT, "recognising"),
        (TurnEndView(1.5, None), Decision.END, "max_silence"),
        (TurnEndView(0.3, "I am calling about, um,"), Decision.WAIT, "mid_clause"),
        (TurnEndView(1.4, "I am calling about, um,"), Decision.WAIT, "mid_clause"),
        (TurnEndView(1.5, "I am calling about, um,"), Decision.END, "max_silence"),
        (TurnEndView(0.3, ""), Decision.WAIT, "no_words"),
        (TurnEndView(0.5, "I would like to speak to someone.", 0.2), Decision.LIKELY, "model_unsure"),
        (TurnEndView(0.8, "I would like to speak to someone.", 0.2), Decision.END, "model_unsure"),
        (TurnEndView(0.2, "I would like to speak to someone.", 0.9), Decision.LIKELY, "complete"),
        (TurnEndView(0.4, "I would like to speak to someone.", 0.9), Decision.END, "complete"),
        (TurnEndView(0.5, "No.", None), Decision.LIKELY, "short"),
        (TurnEndView(0.8, "Wait.", None), Decision.END, "short"),
        (TurnEndView(0.25, "Why?", None), Decision.END, "question"),
        (TurnEndView(0.4, "Yes, please.", None), Decision.LIKELY, "short"),
    ]
    for view, verdict, why in cases:
        assert decide(CFG, view) == (verdict, why), view


def test_wait_left_names_the_next_moment_that_can_change_the_answer() -> None:
    assert wait_left(CFG, TurnEndView(0.1, None)) == pytest.approx(0.1)
    assert wait_left(CFG, TurnEndView(0.3, "I am calling about")) == pytest.approx(0.05)
    assert wait_left(CFG, TurnEndView(0.9, "I am calling about")) == pytest.approx(0.6)
    assert wait_left(CFG, TurnEndView(0.2, "Where is it?")) == pytest.approx(0.05)
    assert wait_left(CFG, TurnEndView(0.25, "Where is it?")) == 0.0
    assert wait_left(CFG, TurnEndView(0.3, "Where it is.")) == pytest.approx(0.05)


def test_config_from_turn_taking() -> None:
    cfg = TurnEndConfig.from_turn_taking(TurnTaking())
    assert (cfg.speculative_s, cfg.question_s, cfg.complete_s, cfg.unsure_s, cfg.max_silence_s) == (
        0.15, 0.3, 0.48, 0.8, 1.5)
    cfg = TurnEndConfig.from_turn_taking(TurnTaking(end_of_utterance_silence_ms=1000, max_silence_ms=1200))
    assert (cfg.complete_s, cfg.unsure_s, cfg.max_silence_s) == (1.0, 1.0, 1.2)


def test_config_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="speculative"):
        TurnEndConfig(speculative_s=0.6, unsure_s=0.5)


@pytest.mark.parametrize(("text", "expected"), [
    ("Mm-hm.", True), ("okay", True), ("Yeah, yeah.", True), (".", True), ("", True), ("uh-huh", True),
    ("Wait, stop.", False), ("What about Sunday?", False), ("Yeah, but what about Sunday?", False),
])
def test_backchannels(text: str, expected: bool) -> None:
    assert is_backchannel(text) is expected
