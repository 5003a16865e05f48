"""ChatTTS model-side helpers for the worker: per-row logits control, geometry, receptive field.

Everything here runs in the inference thread and touches torch/ChatTTS objects (imported lazily so that
importing the module stays cheap). Kept apart from tts/chattts_worker.py, which owns threading and
streaming.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["RowControl", "RowSettings", "config_from_geometry", "receptive_field_tokens"]


class RowSettings(Protocol):
    """What one batch row asks of the sampler (the worker's ``Job`` provides it)."""

    @property
    def temperature(self) -> float: ...
    @property
    def top_p(self) -> float: ...
    @property
    def top_k(self) -> int: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def min_tokens(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...


class RowControl:
    """Logits processor: per-row sampling settings, per-row seeded sampling, length limits, cancellation.

    It samples each row itself with the row's own generator (seeded by the request's ``seed``, else at
    random) and hands ``GPT.generate`` a one-hot distribution, so a row's tokens do not depend on which
    other requests share its batch or at which index it sits (the library's ``manual_seed`` re-seeds one
    generator for the whole batch at every step).
    """

    def __init__(self, jobs: Sequence[RowSettings], num_vq: int, eos: int, device: Any) -> None:
        import torch
        from ChatTTS.model.processors import CustomRepetitionPenaltyLogitsProcessorRepeat

        def per_row(values: list[float], dtype: Any) -> Any:
            return torch.tensor(values, dtype=dtype, device=device).repeat_interleave(num_vq)

        self.torch = torch
        self.jobs, self.num_vq, self.eos = jobs, num_vq, eos
        self.temperature = per_row([j.temperature for j in jobs], torch.float32).unsqueeze(1)
        self.top_p = per_row([j.top_p for j in jobs], torch.float32).unsqueeze(1)
        self.top_k = per_row([max(3, j.top_k) for j in jobs], torch.long).unsqueeze(1)
        self.repetition = CustomRepetitionPenaltyLogitsProcessorRepeat(1.05, eos, 16)
        self.generators = [
            torch.Generator(device=device).manual_seed(j.seed if j.seed is not None else secrets.randbits(63))
            for j in jobs
        ]
        self.steps = 0

    def _rows(self, flags: list[bool]) -> Any:
        return self.torch.tensor(flags, device=self.temperature.device).repeat_interleave(self.num_vq)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch, vq = self.torch, self.num_vq
        step = int(input_ids.size(1))
        self.steps = step + 1
        scores = self.repetition(input_ids, scores / self.temperature)
        # top-p then top-k (the library's order), each with its own value per row; keep at least 3 tokens
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(-1)
        drop = (probs.cumsum(-1) - probs) > self.top_p
        drop[:, :3] = False
        drop |= torch.arange(scores.size(1), device=scores.device).unsqueeze(0) >= self.top_k
        scores = scores.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), -math.inf)
        no_eos = [step == 0 or step < j.min_tokens for j in self.jobs]
        if any(no_eos):
            scores[self._rows(no_eos), self.eos] = -math.inf
        probs = scores.softmax(-1)
        choice = torch.empty((scores.size(0), 1), dtype=torch.long, device=scores.device)
        for b, (job, gen) in enumerate(zip(self.jobs, self.generators, strict=True)):
            if job.cancelled or step >= job.max_tokens:
                choice[b * vq : (b + 1) * vq] = self.eos  # stop this row at this step
            else:
                choice[b * vq : (b + 1) * vq] = torch.multinomial(probs[b * vq : (b + 1) * vq], 1, generator=gen)
        return torch.full_like(scores, -math.inf).scatter_(1, choice, 0.0)


def receptive_field_tokens(config: Any) -> int:
    """Tokens either side that can influence a decoded sample (decoder + Vocos convolutions + ISTFT)."""
    dec = 2 + 6 * int(config.decoder.n_layer) + 1
    voc = 3 + 3 * int(config.vocos.backbone.init_args.num_layers) + 2
    return math.ceil((dec + voc) / 2) + 1


def config_from_geometry(geo: dict[str, Any]) -> Any:
    from ChatTTS.config import config as c

    dvae = geo["dvae"]
    return c.Config(
        gpt=c.GPT(**geo["gpt"]), embed=c.Embed(**geo["embed"]), decoder=c.Decoder(**geo["decoder"]),
        dvae=c.DVAE(encoder=c.Decoder(**dvae["encoder"]), decoder=c.Decoder(**dvae["decoder"]),
                    vq=c.VQ(**{**dvae["vq"], "levels": tuple(dvae["vq"]["levels"])})),
        vocos=c.Vocos(backbone=c.Backbone(init_args=c.BackboneInitArgs(**geo["vocos"]["backbone"])),
                      head=c.FourierHead(init_args=c.FourierHeadInitArgs(**geo["vocos"]["head"]))),
        spk_stat=geo["spk_stat"],
    )
