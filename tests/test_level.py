"""audio/level.py: one block and a stack of blocks measure the same, up to rounding."""

from __future__ import annotations

import numpy as np
import pytest

from audio.level import power_db, rows_power_db


def test_a_stack_measures_each_row_as_one_block_does() -> None:
    rng = np.random.default_rng(7)
    rows = (rng.normal(0, 0.01, (64, 256)) * rng.uniform(0, 3, (64, 1))).astype(np.float32)
    rows[3] = 0.0
    stacked = rows_power_db(rows)
    assert stacked == pytest.approx([power_db(r) for r in rows], abs=1e-9)
    assert stacked[3] == pytest.approx(-120.0)  # digital silence: the floor, not -inf
    assert rows_power_db(rows[:5]) == stacked[:5]  # a row's level does not depend on the batch it is in


def test_levels_are_dbfs() -> None:
    t = np.arange(8000) / 8000
    full_scale_sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert power_db(full_scale_sine) == pytest.approx(-3.01, abs=0.01)
    assert power_db(0.01 * full_scale_sine) == pytest.approx(-43.01, abs=0.01)
