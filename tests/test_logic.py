"""Scripted agent logic: greeting, word rules, DTMF menu, fallback, goodbye, idle."""

from __future__ import annotations

from agents.logic import (
    CallEnding,
    CallStarted,
    Dtmf,
    Hangup,
    LogicEvent,
    Output,
    Phrase,
    Rewindable,
    ScriptedLogic,
    SilenceTimeout,
    Transfer,
    Utterance,
    match_rule,
    words,
)
from agents.spec import AgentSpec

AGENT = AgentSpec.model_validate({
    "id": "t", "name": "T", "greeting": "Hello, how can I help?",
    "logic": {"kind": "scripted", "rules": [
        {"when": ["hours", "open"], "say": "We are open nine to five."},
        {"when": ["human agent", "operator"], "say": "Transferring you now.", "action": "transfer",
         "transfer_to": "+14155550123"},
        {"when": ["cancel"], "say": "Cancelled. Bye.", "action": "hangup"},
        {"dtmf": "1", "say": "You pressed one."},
    ], "fallback": "Sorry?", "goodbye": "Bye now."},
    "turn_taking": {"reprompt": "Still there?"},
})


async def run(logic: ScriptedLogic, event: LogicEvent) -> list[Output]:
    return [o async for o in logic.respond(event)]


async def test_greeting_rules_fallback_and_goodbye() -> None:
    logic = ScriptedLogic(AGENT)
    assert await run(logic, CallStarted("CA1")) == [Phrase("Hello, how can I help?")]
    assert await run(logic, Utterance("What time are you OPEN on Saturday?")) == [Phrase("We are open nine to five.")]
    assert await run(logic, Utterance("I want a human agent please")) == [
        Phrase("Transferring you now."), Transfer("+14155550123")]
    assert await run(logic, Utterance("cancel it")) == [Phrase("Cancelled. Bye."), Hangup()]
    assert await run(logic, Utterance("the weather is nice")) == [Phrase("Sorry?")]
    assert await run(logic, Utterance("That's all, thank you. Goodbye.")) == [Phrase("Bye now."), Hangup()]
    assert await run(logic, Utterance("  ")) == []
    assert await run(logic, CallEnding("caller_hangup")) == []


async def test_words_match_whole_words_only() -> None:
    rules = list(AGENT.logic.rules)  # type: ignore[union-attr]
    assert match_rule(rules, "the opener broke") is None  # "open" is not a word of it
    assert match_rule(rules, "an agent, a human") is None  # "human agent" needs both, in order
    assert match_rule(rules, "Human-agent!") is rules[1]
    assert words("It's 9-to-5.") == ["it's", "9", "to", "5"]


async def test_dtmf_menu_and_idle() -> None:
    logic = ScriptedLogic(AGENT)
    assert await run(logic, Dtmf("1")) == [Phrase("You pressed one.")]
    assert await run(logic, Dtmf("9")) == [Phrase("Sorry?")]
    # keys pressed before the agent could answer join one turn: the latest is the menu choice, all are logged
    assert await run(logic, Dtmf("1", earlier="99")) == [Phrase("You pressed one.")]
    assert await run(logic, Dtmf("9", earlier="1")) == [Phrase("Sorry?")]
    assert ("caller", "<dtmf 991>") in logic.heard_log and ("caller", "<dtmf 19>") in logic.heard_log
    assert await run(logic, SilenceTimeout(final=False)) == [Phrase("Still there?")]
    assert await run(logic, SilenceTimeout(final=True)) == [Phrase("Bye now."), Hangup()]


async def test_truncate_to_heard_rewrites_the_last_reply() -> None:
    logic = ScriptedLogic(AGENT)
    await run(logic, CallStarted())
    await run(logic, Utterance("hours"))
    logic.truncate_to_heard("We are open")
    assert logic.heard_log[-1] == ("agent", "We are open")
    logic.truncate_to_heard("")
    assert logic.heard_log[-1] == ("caller", "hours")


async def test_rollback_undoes_a_speculative_reply() -> None:
    logic = ScriptedLogic(AGENT)
    assert isinstance(logic, Rewindable)
    await run(logic, CallStarted())
    state = logic.checkpoint()
    await run(logic, Utterance("hours"))
    assert len(logic.heard_log) == 3
    logic.rollback(state)
    assert logic.heard_log == [("agent", "Hello, how can I help?")]
    await run(logic, Utterance("hours"))  # the confirmed turn, taken again
    logic.rollback(state)
    logic.rollback(state)  # the checkpoint is not consumed or aliased
    assert logic.heard_log == [("agent", "Hello, how can I help?")]
