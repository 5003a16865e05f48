"""Signal level: mean power in dBFS, for one block or for a stack of equal blocks at once.

Rules of this file: pure functions over float32 samples in [-1, 1]; no state, no I/O.

The VAD batcher measures every call's chunk of a tick in one call (:func:`rows_power_db`) for its pre-gate
and hands each level on with the verdict, so the Endpointer need not measure the chunk again. One block
alone (:func:`power_db`) is a float64 dot product, about three times faster than a one-row batch; the two
sum in a different order, so they can differ in the last bits (~1e-15 relative): a stream takes its levels
from one of them, never both.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
FLOOR = 1e-12  # added to the mean power: digital silence is -120 dBFS, not -inf


def rows_power_db(rows: F32) -> list[float]:
    """The mean power of each row of a 2-D block, in dBFS."""
    energy = np.einsum("ij,ij->i", rows, rows, dtype=np.float64) / max(1, rows.shape[1])
    levels: list[float] = (10.0 * np.log10(energy + FLOOR)).tolist()
    return levels


def power_db(samples: F32) -> float:
    """The mean power of one block, in dBFS (``np.mean(np.square(...))`` took six times as long)."""
    x = samples.astype(np.float64)
    return 10.0 * math.log10(float(x @ x) / max(1, len(x)) + FLOOR)
