"""Endpointing state machine: synthetic probabilities (exact) and real fixtures through Silero."""

from __future__ import annotations

import numpy as np

from agents.endpointing import BargeIn, EndpointConfig, Endpointer, SpeechDropped, SpeechEnd, SpeechStart
from agents.spec import TurnTaking
from agents.vad import CHUNK, shared_model
from audio.codec import ulaw2lin
from tests.speech_fixtures import mulaw, transcripts

DT = CHUNK / 8000  # 32 ms


def run(probs: list[float], cfg: EndpointConfig | None = None) -> list[tuple[int, object]]:
    ep = Endpointer(cfg)
    out: list[tuple[int, object]] = []
    for i, p in enumerate(probs):
        chunk = np.full(CHUNK, i, dtype=np.float32)  # sample value = chunk index, to check what is kept
        out += [(i, e) for e in ep.feed(p, chunk)]
    out += [(len(probs), e) for e in ep.flush()]
    return out


def test_utterance_with_pre_roll_barge_in_and_end() -> None:
    cfg = EndpointConfig(threshold=0.5, end_silence_s=0.5, barge_in_s=0.25, pre_roll_s=0.1, tail_s=0.064)
    probs = [0.0] * 10 + [0.9] * 20 + [0.4] * 3 + [0.9] * 5 + [0.0] * 30
    events = run(probs, cfg)
    kinds = [(i, type(e).__name__) for i, e in events]
    # starts on chunk 10; 0.25 s voiced = 8 chunks → barge-in on chunk 17; 0.4 >= 0.35 counts as voiced;
    # last voiced chunk 37; 0.5 s of silence = 16 chunks → end decided on chunk 53.
    assert kinds == [(10, "SpeechStart"), (17, "BargeIn"), (53, "SpeechEnd")]
    start = events[0][1]
    assert isinstance(start, SpeechStart) and abs(start.at - 10 * DT) < 1e-9
    end = events[2][1]
    assert isinstance(end, SpeechEnd)
    assert abs(end.started_at - 10 * DT) < 1e-9 and abs(end.ended_at - 38 * DT) < 1e-9
    kept = np.unique(end.pcm)
    # pre-roll: 0.1 s = 4 chunks before the start (6..9), then speech, then 64 ms = 2 chunks of tail
    assert kept[0] == 6 and kept[-1] == 39


def test_short_blip_is_dropped_and_never_barges_in() -> None:
    events = run([0.0] * 5 + [0.9] * 2 + [0.0] * 30)
    assert [type(e) for _, e in events] == [SpeechStart, SpeechDropped]


def test_pause_shorter_than_end_silence_does_not_split() -> None:
    probs = [0.9] * 20 + [0.0] * 12 + [0.9] * 20 + [0.0] * 20  # 384 ms pause < 500 ms
    ends = [e for _, e in run(probs) if isinstance(e, SpeechEnd)]
    assert len(ends) == 1


def test_max_utterance_cuts_a_monologue() -> None:
    cfg = EndpointConfig(max_utterance_s=2.0)
    ends = [e for _, e in run([0.9] * 200, cfg) if isinstance(e, SpeechEnd)]
    assert len(ends) >= 3 and all(e.ended_at - e.started_at <= 2.0 + DT for e in ends)


def test_per_agent_turn_taking_settings() -> None:
    cfg = EndpointConfig.from_turn_taking(TurnTaking(barge_in_min_speech_ms=100, end_of_utterance_silence_ms=900,
                                                      vad_threshold=0.7))
    assert cfg.barge_in_s == 0.1 and cfg.end_silence_s == 0.9 and cfg.threshold == 0.7
    assert abs(cfg.neg_threshold - 0.55) < 1e-9
    assert [type(e) for _, e in run([0.6] * 40, cfg)] == []  # below this agent's threshold


def test_every_fixture_is_one_utterance_through_silero() -> None:
    for name in transcripts():
        pcm = ulaw2lin(mulaw(name))
        stream, ep = shared_model().stream(), Endpointer()
        events: list[object] = []
        for i in range(0, len(pcm), 160):
            for p, chunk in stream.feed(pcm[i : i + 160]):
                events += ep.feed(p, chunk)
        events += ep.flush()
        ends = [e for e in events if isinstance(e, SpeechEnd)]
        assert len(ends) == 1, (name, events)
        assert any(isinstance(e, BargeIn) for e in events)
        # fixtures have 0.6 s of lead silence; the caller stops about 1 s before the file ends
        assert 0.5 < ends[0].started_at < 1.2, name
        assert len(pcm) / 8000 - 1.4 < ends[0].ended_at < len(pcm) / 8000 - 0.8, name
