"""LLM agents against a loopback OpenAI-compatible streaming server."""

from __future__ import annotations

from agents.llm import LLMLogic
from agents.logic import CallStarted, Dtmf, Hangup, Output, Phrase, SilenceTimeout, Transfer, Utterance
from agents.spec import AgentSpec
from tests.fake_llm import FakeLLM, FakeReply, run_fake_llm


def agent(base_url: str, **logic: object) -> AgentSpec:
    return AgentSpec.model_validate({
        "id": "llm", "name": "L", "greeting": "Hi, Acme here.",
        "logic": {"kind": "llm", "base_url": base_url, "model": "fake-1", "api_key_env": "FAKE_KEY",
                  "system_prompt": "Be brief.", "temperature": 0.2, **logic},
    })


def texts(outs: list[Output]) -> str:
    return "".join(o for o in outs if isinstance(o, str))


async def test_streams_reply_and_keeps_history() -> None:
    fake = FakeLLM(rules=[("hours", FakeReply("We open at nine, and close at five. Anything else?"))])
    async with run_fake_llm(fake) as url:
        logic = LLMLogic(agent(url), env={"FAKE_KEY": "sk-test"})
        try:
            assert [o async for o in logic.respond(CallStarted())] == [Phrase("Hi, Acme here.")]
            outs = [o async for o in logic.respond(Utterance("What are your hours?"))]
            assert len([o for o in outs if isinstance(o, str)]) > 5  # streamed, not one blob
            assert texts(outs) == "We open at nine, and close at five. Anything else?"
            outs = [o async for o in logic.respond(Dtmf("3"))]
            assert texts(outs).startswith("I'm not sure")
            assert texts([o async for o in logic.respond(Dtmf("4", earlier="12"))])
        finally:
            await logic.aclose()
    body = fake.requests[-1]
    assert fake.auth[-1] == "Bearer sk-test"
    assert body["model"] == "fake-1" and body["temperature"] == 0.2 and body["stream"] is True
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert body["messages"][3]["content"] == "We open at nine, and close at five. Anything else?"
    assert body["messages"][4]["content"] == "[The caller pressed the key 3]"
    assert body["messages"][6]["content"] == "[The caller pressed the keys 1 2 4]"  # joined while waiting
    assert [t["function"]["name"] for t in body["tools"]] == ["hangup"]  # no transfer numbers configured


async def test_tool_calls_hangup_and_transfer() -> None:
    fake = FakeLLM(rules=[
        ("bye", FakeReply("Goodbye!", tool="hangup")),
        ("billing", FakeReply("Let me transfer you.", tool="transfer", args={"number": "+14155550199"})),
        ("evil", FakeReply("", tool="transfer", args={"number": "+19005550000"})),
        ("quiet", FakeReply("", tool="hangup")),
    ])
    async with run_fake_llm(fake) as url:
        logic = LLMLogic(agent(url, transfer_numbers=["+14155550199"]), env={})
        try:
            outs = [o async for o in logic.respond(Utterance("a billing question"))]
            assert texts(outs) == "Let me transfer you." and outs[-1] == Transfer("+14155550199")
            outs = [o async for o in logic.respond(Utterance("evil"))]
            assert not any(isinstance(o, Transfer) for o in outs)  # not an allowed number
            assert "not an allowed" in logic.messages[-1]["content"]
            outs = [o async for o in logic.respond(Utterance("bye"))]
            assert texts(outs) == "Goodbye!" and outs[-1] == Hangup()
            outs = [o async for o in logic.respond(Utterance("quiet"))]
            assert outs == [Phrase("Thanks for calling. Goodbye!"), Hangup()]  # hang-up never silent
        finally:
            await logic.aclose()
    last = fake.requests[-1]["messages"]
    # the history carries the earlier tool call and its result, in wire order
    call_msgs = [m for m in last if m["role"] == "assistant" and m.get("tool_calls")]
    assert call_msgs[0]["tool_calls"][0]["function"] == {"name": "transfer", "arguments": '{"number": "+14155550199"}'}
    tool_ids = [m["tool_call_id"] for m in last if m["role"] == "tool"]
    assert tool_ids == ["call_1", "call_1", "call_1"]
    assert fake.auth[0] == ""  # FAKE_KEY unset: no Authorization header


async def test_interrupted_reply_is_truncated_to_what_was_heard() -> None:
    long = "First sentence here. Second sentence that the caller never hears. Third one."
    fake = FakeLLM(rules=[("tell", FakeReply(long, token_delay_s=0.01))])
    async with run_fake_llm(fake) as url:
        logic = LLMLogic(agent(url), env={})
        try:
            got: list[str] = []
            stream = logic.respond(Utterance("tell me"))
            async for out in stream:
                assert isinstance(out, str)
                got.append(out)
                if "Second" in "".join(got):
                    break  # barge-in: stop consuming
            await stream.aclose()  # type: ignore[attr-defined]
            assert logic.messages[-1]["role"] == "assistant"
            assert "Second" in logic.messages[-1]["content"] and "Third" not in logic.messages[-1]["content"]
            logic.truncate_to_heard("First sentence here.")
            assert logic.messages[-1] == {"role": "assistant", "content": "First sentence here."}
            [o async for o in logic.respond(Utterance("again"))]
        finally:
            await logic.aclose()
    sent = fake.requests[-1]["messages"]
    assert sent[-3:-1] == [{"role": "user", "content": "tell me"},
                           {"role": "assistant", "content": "First sentence here."}]


async def test_endpoint_failure_apologises_and_call_goes_on() -> None:
    fake = FakeLLM(rules=[("boom", FakeReply(status=500))])
    async with run_fake_llm(fake) as url:
        logic = LLMLogic(agent(url), env={})
        try:
            outs = [o async for o in logic.respond(Utterance("boom"))]
            assert outs == [Phrase(logic.agent.turn_taking.apology)]
            outs = [o async for o in logic.respond(Utterance("hello"))]
            assert texts(outs).startswith("I'm not sure")
            outs = [o async for o in logic.respond(SilenceTimeout(final=True))]
            assert outs == [Phrase("Thanks for calling. Goodbye!"), Hangup()]
        finally:
            await logic.aclose()
    # unreachable endpoint: same apology, no exception
    logic = LLMLogic(agent("http://127.0.0.1:9"), env={})
    try:
        assert [o async for o in logic.respond(Utterance("hi"))] == [Phrase(logic.agent.turn_taking.apology)]
    finally:
        await logic.aclose()


async def test_rollback_leaves_no_trace_of_an_abandoned_speculative_reply() -> None:
    fake = FakeLLM(rules=[("hours", FakeReply("We open at nine.")), ("refund", FakeReply("Refunds take a week."))])
    async with run_fake_llm(fake) as url:
        logic = LLMLogic(agent(url), env={})
        try:
            [o async for o in logic.respond(CallStarted())]
            state = logic.checkpoint()
            assert texts([o async for o in logic.respond(Utterance("What are your hours"))]) == "We open at nine."
            logic.rollback(state)  # the caller went on: "... and my refund?"
            outs = [o async for o in logic.respond(Utterance("What are your hours and my refund"))]
            assert texts(outs) == "We open at nine."
        finally:
            await logic.aclose()
    roles = [(m["role"], m["content"]) for m in fake.requests[-1]["messages"]]
    assert roles == [("system", "Be brief."), ("assistant", "Hi, Acme here."),
                     ("user", "What are your hours and my refund")]
