"""The WER normaliser counts recognition errors, not formatting."""

from __future__ import annotations

from bench.wer import normalize, wer


def test_normalize_formatting_away() -> None:
    assert normalize("My account number is 4567.") == "my account number is four five six seven".split()
    assert normalize("change it to 3.30") == "change it to three thirty".split()
    assert normalize("Where's your office?") == normalize("Where is your office")


def test_wer_counts_real_errors() -> None:
    assert wer("When are you open?", "Where are you open?") == (1, 4)
    assert wer("That's all, thank you. Goodbye.", "That's all. Thank you. Goodbye.") == (0, 6)
    assert wer("one two three", "") == (3, 3)
