"""Listener over real Silero + Whisper on the realistic fixtures: speculative decode, end of turn, noise."""

from __future__ import annotations

import asyncio
import threading
from collections import deque

import numpy as np
import pytest

from agents.spec import TurnTaking
from agents.stt import STTConfig, shared_transcriber
from agents.vad import GateConfig, VadBatcher, shared_model
from audio.codec import ulaw2lin
from bench.wer import wer
from gateway.listener import EnoughSpeech, Likely, Listener, ListenEvent, NoWords, Onset, Resumed, TurnEnd
from tests.speech_fixtures import conversation_fixtures, conversation_mulaw

pytestmark = pytest.mark.slow


async def listen(name: str, tt: TurnTaking | None = None, settle: bool = True) -> list[ListenEvent]:
    """Feed a fixture then its line noise; ``settle``: each recognition finishes before more audio is fed."""
    events: list[ListenEvent] = []
    ended = asyncio.Event()

    async def emit(ev: ListenEvent) -> None:
        events.append(ev)
        if isinstance(ev, TurnEnd):
            ended.set()

    stt = shared_transcriber(STTConfig(cpu_threads=2))
    listener = Listener(tt or TurnTaking(), shared_model().stream(), stt, emit, asyncio.get_running_loop().time)
    pcm = ulaw2lin(conversation_mulaw(name)).astype(np.float32) / 32768
    line = pcm[-4000:]  # the fixture's own trailing line noise, repeated after it
    audio = np.concatenate([pcm, *([line] * 6)])
    try:
        for i in range(0, len(audio), 160):
            await listener.feed(audio[i : i + 160])
            if settle:
                await listener.settle()
        if name != "cough":
            await asyncio.wait_for(ended.wait(), 60)
        await asyncio.sleep(0)
    finally:
        await listener.aclose()
    return events


async def test_a_caller_pausing_mid_sentence_gets_one_turn_with_all_the_words() -> None:
    for name in ("refund_pause", "appointment_pause"):
        events = await listen(name)
        ends = [e for e in events if isinstance(e, TurnEnd)]
        assert len(ends) == 1, events
        assert wer(str(conversation_fixtures()[name]["text"]), ends[0].words)[0] <= 3, ends[0].words
        assert isinstance(events[0], Onset)
        # any speculation on the mid-sentence pause was taken back before the turn ended
        likely = [i for i, e in enumerate(events) if isinstance(e, Likely)]
        for i in likely[:-1]:
            assert any(isinstance(e, Resumed) for e in events[i:]), events


async def test_a_complete_question_ends_on_its_words_not_on_the_maximum_silence() -> None:
    events = await listen("hours")
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert len(ends) == 1 and ends[0].why == "question" and "Saturday" in ends[0].words
    assert ends[0].recognition_s > 0
    assert any(isinstance(e, EnoughSpeech) for e in events)
    likely = [e for e in events if isinstance(e, Likely)]
    assert likely and likely[-1].words == ends[0].words  # the speculative words are the turn's words


async def test_a_slow_recogniser_never_ends_a_turn_early() -> None:
    """Audio runs far ahead of recognition: decisions wait for the words (or the maximum silence)."""
    events = await listen("refund_pause", settle=False)
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert len(ends) == 1 and ("refund" in ends[0].words or "order" in ends[0].words), events


async def test_a_cough_is_no_words() -> None:
    events = await listen("cough")
    assert not any(isinstance(e, TurnEnd) and e.words for e in events)
    assert not any(isinstance(e, Likely | EnoughSpeech) for e in events)
    if any(isinstance(e, Onset) for e in events):  # heard as a start of speech: then dismissed as noise
        assert any(isinstance(e, NoWords) or isinstance(e, TurnEnd) and not e.words for e in events)


class HeldVad:
    """The real Silero stream with its verdicts handed back ``hold`` frames late (a slow batch tick)."""

    def __init__(self, hold: int) -> None:
        self.stream = shared_model().stream()
        self.hold = hold
        self.late: deque[list[tuple[float, np.ndarray]]] = deque()

    async def infer(self, samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
        self.late.append(await self.stream.infer(samples))
        return self.late.popleft() if len(self.late) > self.hold else []


@pytest.mark.parametrize("name", ["human", "refund_pause", "hours"])
async def test_the_turn_ends_on_quiet_frames_without_waiting_for_the_vads_verdict(name: str) -> None:
    """Verdicts 60 ms late: the statement still ends within a frame of end_of_utterance_silence_ms (quiet audio
    below the end margin is silence whatever the VAD will say), and a mid-sentence pause is still not an end."""
    events: list[ListenEvent] = []
    fed = [0]

    likely_at: list[float] = []

    async def emit(ev: ListenEvent) -> None:
        events.append(ev)
        if isinstance(ev, Likely):
            likely_at.append(fed[0] / 8000 - ev.stopped_at)

    tt = TurnTaking()
    stt = shared_transcriber(STTConfig(cpu_threads=2))
    listener = Listener(tt, HeldVad(hold=3), stt, emit, lambda: fed[0] / 8000)  # clock: stream time
    pcm = ulaw2lin(conversation_mulaw(name)).astype(np.float32) / 32768
    audio = np.concatenate([pcm, *([pcm[-4000:]] * 6)])
    try:
        for i in range(0, len(audio), 160):
            fed[0] += len(audio[i : i + 160])
            await listener.feed(audio[i : i + 160])
            await listener.settle()  # recognition takes no stream time
    finally:
        await listener.aclose()
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert len(ends) == 1, events
    assert wer(str(conversation_fixtures()[name]["text"]), ends[0].words)[0] <= 3, ends[0].words
    # the speculative decode too starts within a frame of speculative_silence_ms (recognition is instant here)
    speculative = tt.speculative_silence_ms / 1000
    assert likely_at and all(speculative - 1e-9 <= t <= speculative + 0.020 + 1e-9 for t in likely_at), likely_at
    if ends[0].why == "complete":
        wait = ends[0].decided_at - ends[0].stopped_at
        complete = tt.end_of_utterance_silence_ms / 1000
        assert complete - 1e-9 <= wait <= complete + 0.020 + 1e-9, wait  # 60 ms of held verdicts do not count
    else:
        assert (name, ends[0].why) == ("hours", "question"), ends[0].why
        question = tt.question_silence_ms / 1000
        assert question - 1e-9 <= ends[0].decided_at - ends[0].stopped_at <= question + 0.020 + 1e-9


async def test_a_stale_speculative_decode_that_has_not_started_never_runs() -> None:
    """The recogniser's one thread is busy (another call's utterance) while this caller pauses twice and goes on:
    the decodes of those pauses are cancelled before they start, so only the words that matter are recognised."""
    recognised: list[str] = []
    events: list[ListenEvent] = []

    async def emit(ev: ListenEvent) -> None:
        events.append(ev)

    stt = shared_transcriber(STTConfig(cpu_threads=2))
    busy, release = threading.Event(), threading.Event()

    def other_call() -> None:
        busy.set()
        release.wait(30)

    blocker = asyncio.get_running_loop().run_in_executor(stt._executor, other_call)
    await asyncio.to_thread(busy.wait, 30)
    listener = Listener(TurnTaking(), shared_model().stream(), stt, emit, asyncio.get_running_loop().time,
                        on_recognised=lambda t: recognised.append(t.text))
    pcm = ulaw2lin(conversation_mulaw("refund_pause")).astype(np.float32) / 32768
    audio = np.concatenate([pcm, *([pcm[-4000:]] * 6)])
    try:
        for i in range(0, len(audio), 160):
            await listener.feed(audio[i : i + 160])
        assert sum(isinstance(e, Resumed | TurnEnd) for e in events) == 0  # no words yet: nothing decided
        release.set()
        await blocker
        for _ in range(100):
            await listener.settle()
            if any(isinstance(e, TurnEnd) for e in events):
                break
            await asyncio.sleep(0.05)
    finally:
        release.set()
        await listener.aclose()
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert len(ends) == 1 and ("refund" in ends[0].words or "order" in ends[0].words), events
    assert recognised == [ends[0].words], recognised  # one decode: the mid-sentence pauses' never ran


@pytest.mark.parametrize("name", ["refund_pause", "hours", "cough"])
async def test_the_hot_path_hears_exactly_what_the_awaited_path_hears(name: str) -> None:
    """Batched VAD with its pre-gate, as in calls, one batch tick per 20 ms frame: idle-line audio taken
    without waiting (``feed_nowait`` while ``ready_now``, verdicts judged in the batcher's tick) gives the
    same events in the same order, with the same words and the same end of speech, as every frame awaited
    through ``feed``."""

    async def run(hot: bool) -> tuple[list[tuple[str, str, float]], int]:
        events: list[ListenEvent] = []
        fed = [0]

        async def emit(ev: ListenEvent) -> None:
            events.append(ev)

        stt = shared_transcriber(STTConfig(cpu_threads=2))
        batcher = VadBatcher(shared_model(), gate=GateConfig())  # ticked here: run_pending once per frame
        listener = Listener(TurnTaking(), batcher.stream(), stt, emit, lambda: fed[0] / 8000)
        pcm = ulaw2lin(conversation_mulaw(name)).astype(np.float32) / 32768
        audio = np.concatenate([pcm[-4000:], pcm, *([pcm[-4000:]] * 6)])  # idle line first, as a call starts
        taken = 0
        try:
            for i in range(0, len(audio), 160):
                frame = audio[i : i + 160]
                fed[0] += len(frame)
                if hot and listener.ready_now:
                    listener.feed_nowait(frame)
                    taken += 1
                    batcher.run_pending()
                else:
                    feeding = asyncio.ensure_future(listener.feed(frame))
                    while not feeding.done():  # the tick comes while it waits for its verdicts
                        await asyncio.sleep(0)
                        batcher.run_pending()
                    await feeding
                await listener.settle()  # recognition takes no stream time
        finally:
            await listener.aclose()
        seen = [(type(e).__name__, getattr(e, "words", "") or "", round(getattr(e, "stopped_at", 0.0), 3))
                for e in events]
        return seen, taken

    awaited, _ = await run(hot=False)
    hot, taken = await run(hot=True)
    assert taken > 100  # the idle line went the hot way
    assert hot == awaited
    if name != "cough":
        assert "TurnEnd" in [kind for kind, _, _ in hot]
