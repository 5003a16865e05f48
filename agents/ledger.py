"""What the caller actually heard, from Twilio's mark echoes.

Rules of this file: pure bookkeeping, no clock. Each spoken sentence is sent
followed by a uniquely named mark; Twilio echoes the mark when the audio
before it has played. ``clear`` makes Twilio echo every pending mark at once,
so marks outstanding when we sent ``clear`` are *cleared, not heard*
(twilio-media-streams notes §3). A turn's heard text is its sentences whose
marks came back before the clear, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Entry:
    turn: int
    text: str
    state: str = "sent"  # sent → heard | cleared


@dataclass(slots=True)
class HeardLedger:
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def sent(self, mark: str, turn: int, text: str) -> None:
        self._entries[mark] = _Entry(turn, text)

    def echoed(self, mark: str) -> bool:
        """Record an echo; True when it means the sentence was heard (not a post-clear echo)."""
        entry = self._entries.get(mark)
        if entry is None or entry.state != "sent":
            return False
        entry.state = "heard"
        return True

    def cleared(self) -> list[str]:
        """``clear`` was sent: everything still outstanding will never be heard. Returns those marks."""
        gone = [m for m, e in self._entries.items() if e.state == "sent"]
        for m in gone:
            self._entries[m].state = "cleared"
        return gone

    def heard_text(self, turn: int) -> str:
        return " ".join(e.text for e in self._entries.values() if e.turn == turn and e.state == "heard" and e.text)

    def outstanding(self, turn: int | None = None) -> int:
        """Sentences sent (or queued) and not yet heard or cleared."""
        return sum(1 for e in self._entries.values() if e.state == "sent" and (turn is None or e.turn == turn))

    def forget_before(self, turn: int) -> None:
        """Drop settled entries of old turns (bounded memory on long calls)."""
        self._entries = {m: e for m, e in self._entries.items() if e.turn >= turn or e.state == "sent"}
