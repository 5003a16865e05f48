"""The turn-taking policy, table-driven: (events fed at times, with playback) → actions."""

from __future__ import annotations

import pytest

from agents.logic import Dtmf, Hangup, SilenceTimeout, Transfer, Utterance
from agents.turns import (
    MAX_COALESCED_DIGITS,
    QUIET,
    CallerBargeIn,
    CallerSpeechDropped,
    CallerSpeechEnded,
    CallerSpeechStarted,
    DigitPressed,
    EndCall,
    Ignore,
    Interrupt,
    Interrupted,
    Playback,
    PlayoutProgress,
    ReplyFinished,
    Respond,
    Tick,
    Transcribed,
    TurnAction,
    TurnConfig,
    TurnEvent,
    TurnPolicy,
    TurnStarted,
    coalesce,
)

CONFIG = TurnConfig(reprompt_after_s=8.0, hangup_after_s=20.0, max_call_s=100.0, goodbye_timeout_s=30.0)
SPEAKING = Playback(replying=True, unheard=2)
PLAYING = Playback(replying=False, unheard=1)

Step = tuple[float, TurnEvent, Playback, list[TurnAction]]


def run(steps: list[Step], config: TurnConfig = CONFIG) -> TurnPolicy:
    policy = TurnPolicy(config, started_at=0.0)
    for i, (now, event, playback, expected) in enumerate(steps):
        assert policy.feed(event, now, playback) == expected, f"step {i}: {event} at {now}"
    return policy


TABLES: dict[str, list[Step]] = {
    "barge-in while the agent speaks interrupts": [
        (1.0, CallerSpeechStarted(), SPEAKING, []),
        (1.3, CallerBargeIn(), SPEAKING, [Interrupt("speech")]),
    ],
    "speech over silence is not a barge-in": [
        (1.0, CallerSpeechStarted(), QUIET, []),
        (1.3, CallerBargeIn(), QUIET, []),
    ],
    "audio still playing counts as speaking": [
        (1.3, CallerBargeIn(), PLAYING, [Interrupt("speech")]),
    ],
    "an utterance is answered with its stop time": [
        (1.0, CallerSpeechStarted(), QUIET, []),
        (2.0, CallerSpeechEnded(1.8), QUIET, []),
        (2.9, Transcribed("what are your hours", 1.8), QUIET, [Respond(Utterance("what are your hours"), 1.8)]),
    ],
    "a backchannel over the agent is not answered": [
        (1.0, TurnStarted(1, Utterance("hi")), SPEAKING, []),
        (2.0, CallerSpeechEnded(1.9), SPEAKING, []),
        (2.5, Transcribed("mm-hm", 1.9), SPEAKING,
         [Ignore("mm-hm", "said over the agent without barging in (backchannel)")]),
    ],
    "after a barge-in the same speech is answered": [
        (1.0, TurnStarted(1, Utterance("hi")), SPEAKING, []),
        (1.3, CallerBargeIn(), SPEAKING, [Interrupt("speech")]),
        (1.4, Interrupted(), QUIET, []),
        (2.0, Transcribed("stop, I need sales", 1.9), SPEAKING, [Respond(Utterance("stop, I need sales"), 1.9)]),
    ],
    "an empty transcript is dropped": [
        (2.0, CallerSpeechEnded(1.9), QUIET, []),
        (2.5, Transcribed("  ", 1.9), QUIET, []),
    ],
    "a digit interrupts and is answered": [
        (3.0, DigitPressed("1"), SPEAKING, [Interrupt("dtmf"), Respond(Dtmf("1"), 3.0)]),
    ],
    "a digit over silence is answered": [
        (3.0, DigitPressed("#"), QUIET, [Respond(Dtmf("#"), 3.0)]),
    ],
    "idle: reprompt once, then goodbye": [
        (7.9, Tick(), QUIET, []),
        (8.0, Tick(), QUIET, [Respond(SilenceTimeout(final=False))]),
        (8.1, TurnStarted(1, SilenceTimeout(final=False)), QUIET, []),
        (9.0, Tick(), PLAYING, []),  # its own reprompt playing does not hold the clock...
        (12.0, Tick(), QUIET, []),  # ...and is not repeated
        (20.0, Tick(), QUIET, [Respond(SilenceTimeout(final=True))]),
        (25.0, Tick(), QUIET, []),  # the goodbye is asked for once
    ],
    "the silence clock starts when the reply has been heard": [
        (1.0, TurnStarted(1, Utterance("hi")), SPEAKING, []),
        (9.0, Tick(), SPEAKING, []),  # long reply: no reprompt while it plays
        (10.0, PlayoutProgress(heard=True), PLAYING, []),  # a mark heard, more to come
        (12.0, PlayoutProgress(heard=True), QUIET, []),  # the last one: the clock starts at 12
        (19.9, Tick(), QUIET, []),
        (20.0, Tick(), QUIET, [Respond(SilenceTimeout(final=False))]),
    ],
    "caller speech and pending transcripts hold the silence clock": [
        (1.0, CallerSpeechStarted(), QUIET, []),
        (15.0, Tick(), QUIET, []),
        (15.0, CallerSpeechEnded(14.9), QUIET, []),
        (22.0, Tick(), QUIET, []),  # the recognizer is slow: still no reprompt
        (22.5, Transcribed("", 14.9), QUIET, []),
        (29.9, Tick(), QUIET, []),  # held until the last tick with the transcript pending (22.0)
        (30.0, Tick(), QUIET, [Respond(SilenceTimeout(final=False))]),
    ],
    "noise does not restart the silence clock": [
        (5.0, CallerSpeechStarted(), QUIET, []),
        (5.1, CallerSpeechDropped(), QUIET, []),
        (13.1, Tick(), QUIET, [Respond(SilenceTimeout(final=False))]),
    ],
    "goodbye then hang-up once heard in full": [
        (1.0, TurnStarted(1, Utterance("bye")), SPEAKING, []),
        (1.5, ReplyFinished(1, Hangup()), PLAYING, []),
        (2.0, CallerBargeIn(), PLAYING, []),  # no barge-in into the goodbye
        (2.5, Transcribed("wait", 2.4), QUIET, [Ignore("wait", "the call is ending")]),
        (3.0, DigitPressed("1"), PLAYING, []),
        (25.0, Tick(), PLAYING, []),  # no reprompt while ending
        (4.0, PlayoutProgress(heard=True), QUIET, [EndCall("agent_hangup")]),
        (5.0, Tick(), QUIET, []),  # ended: nothing more
    ],
    "transfer after its sentence": [
        (1.0, ReplyFinished(1, Transfer("+15550100")), QUIET, [EndCall("transferred", "+15550100")]),
    ],
    "a goodbye never heard ends the call after the timeout": [
        (1.0, ReplyFinished(1, Hangup()), PLAYING, []),
        (30.9, Tick(), PLAYING, []),
        (31.0, Tick(), PLAYING, [EndCall("agent_hangup")]),
    ],
    "a reply without an action ends nothing": [
        (1.0, ReplyFinished(1, None), QUIET, []),
        (1.1, Tick(), QUIET, []),
    ],
    "maximum duration: goodbye, then hang up whatever plays": [
        (50.0, CallerSpeechStarted(), QUIET, []),  # the caller talking does not extend the call
        (100.0, Tick(), QUIET, [Respond(SilenceTimeout(final=True))]),
        (101.0, TurnStarted(3, SilenceTimeout(final=True)), SPEAKING, []),
        (129.9, Tick(), SPEAKING, []),
        (130.0, Tick(), SPEAKING, [EndCall("max_duration")]),
        (131.0, Tick(), QUIET, []),
    ],
}


@pytest.mark.parametrize("name", list(TABLES))
def test_turn_policy(name: str) -> None:
    run(TABLES[name])


def test_dtmf_does_not_interrupt_when_the_agent_says_so() -> None:
    config = TurnConfig(dtmf_interrupts=False)
    run([(3.0, DigitPressed("2"), SPEAKING, [Respond(Dtmf("2"), 3.0)])], config)


def test_state_is_visible_to_the_runner() -> None:
    policy = run([
        (1.0, TurnStarted(1, SilenceTimeout(final=False)), QUIET, []),
        (2.0, ReplyFinished(1, Hangup()), PLAYING, []),
    ])
    assert policy.turn == 1 and policy.idle_turns == {1} and policy.ending and not policy.ended


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="hangup_after_s must be positive"):
        TurnConfig(hangup_after_s=0)


def test_a_digit_joins_a_digit_turn_still_waiting_and_nothing_else_joins() -> None:
    one, two = Respond(Dtmf("1"), 1.0), Respond(Dtmf("2"), 2.0)
    assert coalesce(one, two) == Respond(Dtmf("2", earlier="1"), 2.0)  # the latest decides; its press is the origin
    assert coalesce(Respond(Dtmf("3", earlier="12"), 1.0), Respond(Dtmf("5", earlier="4"), 3.0)) == Respond(
        Dtmf("5", earlier="1234"), 3.0)
    hello = Respond(Utterance("hello"), 1.0)
    assert coalesce(hello, two) is None and coalesce(two, hello) is None
    assert coalesce(Respond(SilenceTimeout(final=True)), two) is None
    waiting = one
    for i in range(200):  # a flood is one turn of bounded size, keeping the latest keys
        joined = coalesce(waiting, Respond(Dtmf("0123456789"[i % 10]), float(i)))
        assert joined is not None
        waiting = joined
    assert isinstance(waiting.event, Dtmf) and len(waiting.event.digits) == MAX_COALESCED_DIGITS
    assert waiting.event.digits.endswith("56789") and waiting.origin == 199.0
