"""tts.chattts_model: the per-row logits processor and geometry helpers (torch only, no model)."""

from __future__ import annotations

from typing import Any

import torch

from tts.chattts_model import RowControl, receptive_field_tokens
from tts.chattts_sched import Item
from tts.chattts_worker import Job

VQ, C, EOS = 4, 626, 625


def job(seed: int | None = 1, top_k: int = 20, min_tokens: int = 0, max_tokens: int = 100) -> Job:
    j = Job("t", "en", "spk", "[speed_5]", 0.7, 0.9, top_k, False, seed, min_tokens, max_tokens, lambda _: None)
    j.item = Item(1, 0.0, None, key=None)
    return j


def step(ctrl: RowControl, n: int, rows: int, scores: Any = None) -> Any:
    """Run the processor at step ``n``; returns the chosen token per (row, vq)."""
    ids = torch.zeros((rows * VQ, n), dtype=torch.long)
    scores = scores if scores is not None else torch.randn(rows * VQ, C, generator=torch.Generator().manual_seed(n))
    out = ctrl(ids, scores)
    assert torch.isfinite(out).sum(1).eq(1).all()  # one-hot: generate's multinomial can only pick our choice
    return out.argmax(1).view(rows, VQ)


def test_seeded_row_ignores_its_neighbours() -> None:
    alone = RowControl([job(seed=7)], VQ, EOS, "cpu")
    paired = RowControl([job(seed=99), job(seed=7)], VQ, EOS, "cpu")
    for n in range(1, 6):
        s = torch.randn(VQ, C, generator=torch.Generator().manual_seed(n))
        pair_scores = torch.cat([torch.randn(VQ, C), s])
        assert torch.equal(step(alone, n, 1, s.clone())[0], step(paired, n, 2, pair_scores)[1])


def test_top_k_limits_choices_per_row() -> None:
    ctrl = RowControl([job(top_k=3, seed=s) for s in range(8)], VQ, EOS, "cpu")
    scores = torch.arange(C, dtype=torch.float32).repeat(8 * VQ, 1)  # best tokens: 625 (EOS), 624, 623
    picks = step(ctrl, 0, 8, scores)  # step 0: EOS is never allowed
    assert set(picks.flatten().tolist()) <= {624, 623, 622}


def test_cancel_and_max_tokens_force_eos_min_tokens_forbid_it() -> None:
    a, b, c = job(), job(max_tokens=5), job(min_tokens=10)
    ctrl = RowControl([a, b, c], VQ, EOS, "cpu")
    eos_heavy = torch.full((3 * VQ, C), -10.0)
    eos_heavy[:, EOS] = 10.0
    picks = step(ctrl, 3, 3, eos_heavy.clone())
    assert picks[0].eq(EOS).all() and not picks[2].eq(EOS).any()
    assert a.item is not None
    a.item.cancelled = True
    picks = step(ctrl, 5, 3, torch.zeros(3 * VQ, C))
    assert picks[0].eq(EOS).all() and picks[1].eq(EOS).all() and not picks[2].eq(EOS).any()
    assert ctrl.steps == 6


def test_receptive_field_of_the_real_geometry() -> None:
    from ChatTTS.config.config import Config

    # decoder: 2 (conv_in) + 12 blocks x 6 + 1 (out) frames; vocos: 3 + 8 x 3 + 2 (ISTFT) → 104 frames = 52 tokens
    assert receptive_field_tokens(Config()) == 53
