"""Paired comparisons over Monte-Carlo seeds (common random numbers).

`paired_ci(a, b)`: seed k of `a` and of `b` is the same chip draw, so the
difference a_k - b_k removes the chip-to-chip variance both share; the interval is
Student's t over the n differences.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["paired_ci"]


def paired_ci(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """(mean of a - b, lower, upper) of the `level` confidence interval of the paired mean difference."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"paired_ci needs two equal-length 1-D samples of >= 2 seeds, got {np.shape(d)}")
    m, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))
    h = float(stats.t.ppf(0.5 + level / 2, d.size - 1) * se)
    return m, m - h, m + h
