"""The comparison table of conditions on the same chips: FP, each condition's mean +/- std, a paired difference.

    for line in comparison_table(fp, {"naive ranges": naive_mc, "PT ranges": pt_mc}, "accuracy"):
        print(line)

One Markdown row per drift time. When both conditions of `paired` are present, the
last column is their paired difference over chips in points (100 x the metric) with
its 95 % confidence interval (`paired_ci`; NaN with one chip): seed k is the same
chip in every condition, so the difference is free of the chip-to-chip spread.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from aimc_jax.evaluation._montecarlo import MCResult
from aimc_jax.evaluation._results import format_time
from aimc_jax.evaluation._stats import paired_ci

__all__ = ["comparison_table"]


def _short(condition: str) -> str:
    return condition.removesuffix(" ranges")


def comparison_table(
    fp: Mapping[str, float],
    results: Mapping[str, MCResult],
    metric: str,
    *,
    paired: tuple[str, str] = ("PT ranges", "naive ranges"),
) -> list[str]:
    """Markdown lines: header, separator, one row per drift time.

    Args:
      fp: the float model's metrics (`evaluate_float`).
      results: {condition: MCResult}, all over the same chips and drift times; the
        columns read "analog, <condition>".
      metric: the metric shown (e.g. the task's headline metric).
      paired: (a, b): the column "a - b (points, 95 % CI)" when both are in `results`
        (" ranges" dropped from the names: "PT - naive").

    Raises:
      ValueError: no results, or results over different chips or drift times.
    """
    if not results:
        raise ValueError("comparison_table needs at least one result")
    first = next(iter(results.values()))
    if any((mc.seeds, mc.times) != (first.seeds, first.times) for mc in results.values()):
        raise ValueError("comparison_table: the results are not over the same chips and drift times")
    summaries = {name: mc.summary()[metric] for name, mc in results.items()}
    diff = all(name in results for name in paired)
    header = "| drift time | FP | " + " | ".join(f"analog, {n}" for n in results)
    if diff:
        header += f" | {_short(paired[0])} - {_short(paired[1])} (points, 95 % CI)"
    lines = [header + " |", "|" + "---|" * header.count("|")]
    for i, t in enumerate(first.times):
        cells = [format_time(t), f"{fp[metric]:.4f}"]
        cells += [f"{summaries[n][t][0]:.4f} +/- {summaries[n][t][1]:.4f}" for n in results]
        if diff:
            a, b = (results[n].values[metric][i] for n in paired)
            m, lo, hi = paired_ci(a, b) if len(first.seeds) > 1 else (np.nan,) * 3
            cells.append(f"{100 * m:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return lines
