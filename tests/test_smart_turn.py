"""Smart Turn v3.2 (optional audio end-of-turn model) from the pipecat-ai wheel, never importing pipecat."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from agents import smart_turn
from audio.codec import ulaw2lin
from tests.speech_fixtures import mulaw

pytestmark = pytest.mark.slow


def test_features_shape_and_left_padding() -> None:
    feats = smart_turn.features(np.zeros(8000, dtype=np.float32))
    assert feats.shape == (1, 80, 800) and feats.dtype == np.float32
    long = smart_turn.features(np.random.default_rng(0).normal(0, 0.1, 8000 * 12).astype(np.float32))
    assert long.shape == (1, 80, 800)  # only the last 8 s


def test_scores_a_complete_question_high_when_installed() -> None:
    if smart_turn.model_path() is None:
        assert smart_turn.load() is None  # absent wheel: turn-taking goes on without it
        pytest.skip(f"{smart_turn.PIN} not installed")
    model = smart_turn.load()
    assert model is not None and smart_turn.load() is model
    assert "pipecat" not in sys.modules  # located, never imported
    pcm = (ulaw2lin(mulaw("hours")) / 32768).astype(np.float32)
    assert 0.5 < model.score_sync(pcm[: int(len(pcm) - 0.8 * 8000)]) <= 1.0


def test_missing_wheel_degrades_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smart_turn, "_tried", False)
    monkeypatch.setattr(smart_turn, "_shared", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert smart_turn.model_path() is None and smart_turn.load() is None
