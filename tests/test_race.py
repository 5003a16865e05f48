"""The per-sentence race policy, table-driven: events in, actions out, time passed in (no event loop)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tts.breaker import BreakerPolicy, BreakerRegistry
from tts.race import (
    Action,
    Cancel,
    CircuitOpened,
    Emit,
    Failed,
    Fallback,
    Finished,
    FirstAudio,
    Gap,
    Hedge,
    Race,
    Restart,
    Start,
)

BUDGET, GIVE_UP = 0.4, 8.0
ABC = ["a", "b", "c"]


@dataclass(frozen=True)
class Audio:
    attempt: int
    at: float
    seconds: float = 0.1


@dataclass(frozen=True)
class End:
    attempt: int
    at: float


@dataclass(frozen=True)
class Error:
    attempt: int
    at: float
    reason: str = "boom"


@dataclass(frozen=True)
class Timer:
    at: float


Event = Audio | End | Error | Timer


def feed(race: Race, event: Event) -> list[Action]:
    if isinstance(event, Audio):
        return race.audio(event.attempt, event.seconds, event.at)
    if isinstance(event, End):
        return race.end(event.attempt, event.at)
    if isinstance(event, Error):
        return race.error(event.attempt, event.reason, event.at)
    return race.timer(event.at)


def fin(provider: str, first: float, processing: float, audio: float, fallbacks: tuple[str, ...] = (),
        restarts: int = 0, gap: float = 0.0) -> Finished:
    return Finished(provider, first, processing, audio, fallbacks, restarts, gap)


# (name, order, [(event, expected actions)...]); the race starts at t=0 with [Start(0, order[0], ...)],
# with fresh breakers (a failure counts, none opens).
CASES: list[tuple[str, list[str], list[tuple[Event, list[Action]]]]] = [
    ("primary speaks", ABC, [
        (Audio(0, 0.05), [FirstAudio("a", 0.05), Emit(0, "a")]),
        (Audio(0, 0.10), [Emit(0, "a")]),
        (End(0, 0.2), [fin("a", 0.05, 0.2, 0.2)]),
    ]),
    ("error before audio hands over at once, no restart", ABC, [
        (Error(0, 0.1, "CUDA out of memory"), [Cancel(0), Fallback("a", "error", "CUDA out of memory"),
                                              Start(1, "b", 0.5)]),
        (Audio(1, 0.2), [FirstAudio("b", 0.2), Gap("b", 0.2), Emit(1, "b")]),
        (End(1, 0.3), [fin("b", 0.2, 0.3, 0.1, ("a: CUDA out of memory",), gap=0.2)]),
    ]),
    ("no audio within the budget: hedge, first audio wins, the slow loser is cancelled", ABC, [
        (Timer(0.4), [Hedge("a", BUDGET), Start(1, "b", 0.8)]),
        (Audio(1, 0.5), [FirstAudio("b", 0.5), Gap("b", 0.5), Cancel(0),
                         Fallback("a", "slow", "slow (no audio in 400 ms, lost to b)"), Emit(1, "b")]),
        (Audio(0, 0.55), []),  # the loser's late chunk
        (End(1, 0.6), [fin("b", 0.5, 0.6, 0.1, ("a: no audio within 400 ms, hedging",
                                                 "a: slow (no audio in 400 ms, lost to b)"), gap=0.5)]),
    ]),
    ("hedged but the slow primary wins: the hedge is cancelled, nothing counted against it", ABC, [
        (Timer(0.4), [Hedge("a", BUDGET), Start(1, "b", 0.8)]),
        (Audio(0, 0.45), [FirstAudio("a", 0.45), Gap("a", 0.45), Cancel(1), Emit(0, "a")]),
        (End(0, 0.5), [fin("a", 0.45, 0.5, 0.1, ("a: no audio within 400 ms, hedging",), gap=0.45)]),
    ]),
    ("hedges cascade", ABC, [
        (Timer(0.4), [Hedge("a", BUDGET), Start(1, "b", 0.8)]),
        (Timer(0.8), [Hedge("b", BUDGET), Start(2, "c", None)]),  # the last provider has no deadline
        (Timer(1.2), []),  # nothing left to hedge with
    ]),
    ("owner dies mid-sentence: restart on the next provider", ABC, [
        (Audio(0, 0.05), [FirstAudio("a", 0.05), Emit(0, "a")]),
        (Error(0, 0.1, "died mid-sentence"), [Cancel(0), Fallback("a", "error", "died mid-sentence"),
                                              Restart("a", "died mid-sentence"), Start(1, "b", 0.5)]),
        (Audio(1, 0.3), [Gap("b", pytest.approx(0.2)), Emit(1, "b")]),  # type: ignore[arg-type]
        (End(1, 0.4), [fin("b", 0.05, 0.4, 0.1, ("a: died mid-sentence",), restarts=1,
                           gap=pytest.approx(0.2))]),  # type: ignore[arg-type]
    ]),
    ("owner stalls past what it delivered plus the budget: restart", ABC, [
        (Audio(0, 0.1, seconds=0.2), [FirstAudio("a", 0.1), Emit(0, "a")]),
        (Timer(0.69), []),  # horizon 0.3 + budget 0.4 = 0.7: not yet
        (Timer(0.75), [Cancel(0), Fallback("a", "stall", "stalled mid-sentence (0.65 s without audio)"),
                      Start(1, "b", pytest.approx(1.15)),  # type: ignore[arg-type]
                      Restart("a", "stalled mid-sentence (0.65 s without audio)")]),
    ]),
    ("finished without audio is a fallback", ["a", "b"], [
        (End(0, 0.1), [Cancel(0), Fallback("a", "no_audio", "finished without audio"), Start(1, "b", None)]),
    ]),
    ("every provider fails: the sentence fails with every reason", ["a", "b"], [
        (Error(0, 0.1, "down"), [Cancel(0), Fallback("a", "error", "down"), Start(1, "b", None)]),
        (Error(1, 0.2, "gone"), [Cancel(1), Fallback("b", "error", "gone"), Failed("a: down; b: gone")]),
        (Audio(1, 0.3), []),
    ]),
    ("the last provider slow mid-sentence (starved CPU) is given until give_up_s, then restarted", ["a"], [
        (Audio(0, 0.1, seconds=0.2), [FirstAudio("a", 0.1), Emit(0, "a")]),
        (Timer(0.75), []),  # past what it delivered plus the budget, but nobody else could speak it
        (Audio(0, 3.0, seconds=0.2), [Emit(0, "a")]),  # 2.7 s of silence, then it goes on
        (Timer(3.0 + GIVE_UP - 0.01), []),  # horizon: its last chunk at 3.0 s
        (Timer(3.0 + GIVE_UP + 0.01), [Cancel(0), Fallback("a", "stall", "stalled mid-sentence (8.01 s without audio)"),
                                       Restart("a", "stalled mid-sentence (8.01 s without audio)"),
                                       Failed("a: stalled mid-sentence (8.01 s without audio)")]),
    ]),
    ("no audio at all after give_up_s, even from the last provider", ["a"], [
        (Timer(GIVE_UP), [Cancel(0), Fallback("a", "timeout", "no audio within 8.0 s"),
                          Failed("a: no audio within 8.0 s")]),
    ]),
]


@pytest.mark.parametrize(("name", "order", "steps"), CASES, ids=[c[0] for c in CASES])
def test_race_table(name: str, order: list[str], steps: list[tuple[Event, list[Action]]]) -> None:
    race = Race(order, 0.0, BUDGET, GIVE_UP, BreakerRegistry())  # as in calls (default: 3 failures open one)
    assert race.start() == [Start(0, order[0], None if len(order) == 1 else BUDGET)]
    for event, expected in steps:
        assert feed(race, event) == expected, (name, event)


def test_next_wake_follows_the_policy() -> None:
    race = Race(ABC, 0.0, BUDGET, GIVE_UP)
    race.start()
    assert race.next_wake() == BUDGET  # hedge timer
    race.timer(0.4)
    race.timer(0.8)
    assert race.next_wake() == GIVE_UP  # nothing left to hedge with: the give-up of the first attempt
    race.audio(2, 0.5, 1.0)
    assert race.next_wake() == pytest.approx(1.0 + 0.5 + GIVE_UP)  # stall watch: no provider left to take over
    race.end(2, 1.2)
    assert race.next_wake() is None and race.finished


def test_open_breaker_is_skipped_then_all_open_are_tried_anyway() -> None:
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1))
    for name in ("a", "b"):
        breakers.get(name).record_failure(0.0, "x")
    race = Race(["a", "b"], 1.0, BUDGET, GIVE_UP, breakers)
    assert race.start() == [Fallback("a", "circuit_open", "circuit open"),
                            Fallback("b", "circuit_open", "circuit open"), Start(0, "a", 1.4)]
    only_a = BreakerRegistry(BreakerPolicy(failure_threshold=1))
    only_a.get("a").record_failure(0.0, "x")
    race = Race(["a", "b"], 1.0, BUDGET, GIVE_UP, only_a)
    assert race.start() == [Fallback("a", "circuit_open", "circuit open"), Start(0, "b", None)]


def test_breakers_count_failures_and_successes() -> None:
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=2))
    for t in (0.0, 10.0):
        race = Race(["a", "b"], t, BUDGET, GIVE_UP, breakers)
        race.start()
        actions = race.error(0, "down", t + 0.1)
    assert CircuitOpened("a", "down") in actions  # the second failure opens it
    race = Race(["a", "b"], 20.0, BUDGET, GIVE_UP, breakers)
    assert race.start()[0] == Fallback("a", "circuit_open", "circuit open")
    race.audio(0, 0.1, 20.1)
    race.end(0, 20.2)
    assert breakers.get("b").allow(20.3)


def test_without_breakers_nothing_is_recorded() -> None:
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1))
    race = Race(["a", "b"], 0.0, BUDGET, GIVE_UP, None)
    race.start()
    assert race.error(0, "down", 0.1) == [Cancel(0), Fallback("a", "error", "down"), Start(1, "b", None)]
    assert breakers.get("a").allow(0.2)


def test_abandon_cancels_what_runs_and_ends_the_race() -> None:
    race = Race(ABC, 0.0, BUDGET, GIVE_UP)
    race.start()
    race.timer(0.4)
    assert race.abandon(0.5) == [Cancel(0), Cancel(1)]
    assert race.finished and race.next_wake() is None and race.timer(1.0) == []
    assert race.abandon(0.6) == []


def test_a_race_needs_a_provider() -> None:
    with pytest.raises(ValueError, match="at least one provider"):
        Race([], 0.0, BUDGET, GIVE_UP)
