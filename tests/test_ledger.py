"""Heard ledger: marks echoed before a clear are heard; the rest are not."""

from __future__ import annotations

from agents.ledger import HeardLedger


def test_heard_text_follows_echoes_and_clear() -> None:
    ledger = HeardLedger()
    ledger.sent("turn2-start", 2, "")
    for i, text in enumerate(["One.", "Two.", "Three."], 1):
        ledger.sent(f"t2-{i}", 2, text)
    assert ledger.outstanding(2) == 4
    assert ledger.echoed("turn2-start") and ledger.echoed("t2-1")
    assert not ledger.echoed("unknown")
    assert ledger.cleared() == ["t2-2", "t2-3"]
    assert not ledger.echoed("t2-2")  # echoed because of the clear, never played
    assert ledger.heard_text(2) == "One."
    assert ledger.outstanding() == 0


def test_turns_are_separate_and_old_ones_forgotten() -> None:
    ledger = HeardLedger()
    ledger.sent("a", 1, "Hello.")
    ledger.echoed("a")
    ledger.sent("b", 2, "Bye.")
    assert ledger.heard_text(1) == "Hello." and ledger.heard_text(2) == ""
    ledger.forget_before(2)
    assert ledger.heard_text(1) == "" and ledger.outstanding(2) == 1
