"""Claims as data: a paired difference of two conditions against a bar, with a three-way verdict.

    claim = Claim(label="(b) full HWA + PT - full HWA", condition="full HWA + PT", op=">", bar=0.0)
    for check in check_claim(claim, results["MRPC"], "f1"):
        print(check.time, check.mean, check.lower, check.upper, check.verdict)

The difference is taken chip by chip (seed k is the same chip in both conditions) in
metric points x 100, with its 95 % CI (`evaluation.paired_ci`). A claim holds ("yes")
when the whole CI passes `difference <op> bar`, fails ("no") when none of it does,
and is "not shown" when the CI straddles the bar.

References:
  Lammie, Vasilopoulos et al., ISCAS 2024 (arXiv 2401.09859), claims (a) and (b) of Sec. I.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aimc_jax.data import task_spec
from aimc_jax.evaluation import MCResult, format_time, paired_ci

__all__ = ["CLAIMS", "PT_GAIN", "Claim", "ClaimCheck", "check_claim", "claims_table", "plot_claims"]

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Claim:
    """`condition - baseline <op> bar`, in metric points x 100, paired over chips.

    Attributes:
      label: the claim's column header, e.g. "(a) reduced HWA + PT - full HWA".
      condition: the condition whose score is claimed.
      baseline: the condition it is compared with.
      op: ">=", ">", "<=" or "<".
      bar: the bar the difference must clear (points).
      question: the verdict column's header (default "holds (<op> <bar>)?").
    """

    label: str
    condition: str
    baseline: str = "full HWA"
    op: str = ">="
    bar: float = 0.0
    question: str = ""

    def __post_init__(self):
        if self.op not in _OPS:
            raise ValueError(f"Claim {self.label!r}: op must be one of {tuple(_OPS)}, got {self.op!r}")
        if not self.question:
            object.__setattr__(self, "question", f"holds ({self.op} {self.bar:g})?")

    def passes(self, difference: float) -> bool:
        """Whether one value of the difference clears the bar."""
        return bool(_OPS[self.op](difference, self.bar))

    def applies(self, conditions: Mapping[str, MCResult]) -> bool:
        """Whether both of its conditions are in `conditions`."""
        return self.condition in conditions and self.baseline in conditions


# the paper's claims, both against full HWA: (a) PT makes a simpler HWA training as good (within 0.1
# points), (b) PT of the ranges full HWA learned improves them
CLAIMS = (
    Claim(label="(a) reduced HWA + PT - full HWA", condition="reduced HWA + PT", op=">=", bar=-0.1),
    Claim(label="(b) full HWA + PT - full HWA", condition="full HWA + PT", op=">", bar=0.0),
)
"""The paper's two claims: (a) reduced HWA + PT within 0.1 point of full HWA, (b) PT improves full HWA."""
# what PT adds to the FP weights' naive ranges
PT_GAIN = Claim(label="PT - naive", condition="PT", baseline="naive", op=">", bar=0.0, question="PT better?")
"""The premise: PT of the naive ranges on the FP weights improves on them."""


class ClaimCheck(NamedTuple):
    """A claim at one drift time: mean paired difference (points), its 95 % CI and the verdict."""

    time: float
    mean: float
    lower: float
    upper: float
    verdict: str  # "yes", "no" or "not shown"


def check_claim(claim: Claim, conditions: Mapping[str, MCResult], metric: str) -> list[ClaimCheck]:
    """The claim at every drift time of one task's results {condition: MCResult} (same chips and times).

    Raises:
      KeyError: a condition of the claim is missing. ValueError: fewer than two chips.
    """
    a, b = conditions[claim.condition], conditions[claim.baseline]
    out = []
    for i, t in enumerate(b.times):
        m, lo, hi = paired_ci(100 * a.values[metric][i], 100 * b.values[metric][i])
        verdict = "yes" if claim.passes(lo) else "no" if not claim.passes(hi) else "not shown"
        out.append(ClaimCheck(t, m, lo, hi, verdict))
    return out


def claims_table(results: Mapping[str, Mapping[str, MCResult]], claims: Sequence[Claim] = CLAIMS) -> list[str]:
    """Markdown lines: per task (headline metric) and drift time, each claim's "mean [lo, hi]" and verdict.

    Args:
      results: {task: {condition: MCResult}}.
      claims: the columns; a task where none applies is left out, a claim that does not
        apply (its condition still running) shows "-".
    """
    head = "".join(f" {c.label} | {c.question} |" for c in claims)
    lines = ["| task | metric | time |" + head, "|---|---|---|" + "---|---|" * len(claims)]
    for task, conds in results.items():
        shown = [c for c in claims if c.applies(conds)]
        if not shown:
            continue
        metric = task_spec(task).metrics[0]
        checks = {c: check_claim(c, conds, metric) for c in shown}
        for i, t in enumerate(conds[shown[0].baseline].times):
            cells = [task, metric, format_time(t)]
            for c in claims:
                if c in checks:
                    k = checks[c][i]
                    cells += [f"{k.mean:+.2f} [{k.lower:+.2f}, {k.upper:+.2f}]", k.verdict]
                else:
                    cells += ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_claims(
    results: Mapping[str, Mapping[str, MCResult]], path: Path, claims: Sequence[Claim] = CLAIMS
) -> bool:  # fmt: skip
    """Per task: each claim's paired difference (mean and 95 % CI) against drift time, with its bar (dotted).

    Returns:
      False (and no file: an earlier one is removed) while no task has a claim to show.
    """
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. inline plots) is left alone

    tasks = [t for t, conds in results.items() if any(c.applies(conds) for c in claims)]
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return False
    cols = min(3, len(tasks))
    nrows = -(-len(tasks) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        conds, metric = results[task], task_spec(task).metrics[0]
        times = np.asarray(next(conds[c.baseline].times for c in claims if c.applies(conds)))
        for k, claim in enumerate(claims):
            if not claim.applies(conds):
                continue
            cis = np.array([(c.mean, c.lower, c.upper) for c in check_claim(claim, conds, metric)])
            x = times * (1.25 if k else 0.8)  # side by side on the log axis
            ax.errorbar(x, cis[:, 0], yerr=[cis[:, 0] - cis[:, 1], cis[:, 2] - cis[:, 0]], marker="o", capsize=3,
                        ls="none", color=f"C{k}", label=claim.label)  # fmt: skip
            ax.axhline(claim.bar, color=f"C{k}", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(times, [format_time(t) for t in times])
        ax.minorticks_off()
        ax.set_ylabel(f"{metric} x 100, paired diff.")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("The paper's claims: paired differences over seeds, 95 % CI (dotted: each claim's bar)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True
