"""Conditions as data: where a condition's weights and ranges come from, and the settings of a study.

    PT = Condition(name="PT", weights="FP", ranges="naive", pt=True)
    settings = StudySettings(seeds=10, max_eval=500, pt_steps=100)

A condition names its weights (the FP fine-tuned model, or one of the two HWA
trainings of it) and its ranges (none: the float model; "naive": column abs-max
and min(max|x|, 3 std x) from calibration data; "HWA": the DAC ranges full HWA
learned), optionally PT-optimised from there. `StudySettings` holds every number
that enters a cached unit's key.

References:
  Lammie, Vasilopoulos et al., ISCAS 2024 (arXiv 2401.09859), Sec. IV.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "CONDITIONS",
    "FP",
    "FULL_HWA",
    "FULL_HWA_PT",
    "NAIVE",
    "PT",
    "REDUCED_HWA_PT",
    "TIMES",
    "Condition",
    "StudySettings",
]

TIMES = (3600.0, 86400.0, 365 * 86400.0)
"""The drift times the protocol scores: 1 h, 1 day and 1 year after programming (seconds)."""
WEIGHTS = ("FP", "full HWA", "reduced HWA")
RANGES = ("float", "naive", "HWA")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Condition:
    """One column of the comparison: a model's weights, its ranges, and whether PT optimises them.

    Attributes:
      name: the label in tables and cache keys (a PT condition's name also seeds its PT key).
      weights: "FP" (the float fine-tuned model), "full HWA" or "reduced HWA" (its HWA trainings).
      ranges: "float" (no analog chip: the FP model's float score), "naive" (calibrated from
        the weights' own calibration inputs) or "HWA" (the ranges full HWA learned).
      pt: PT-optimise gamma and beta, starting from `ranges`.
    """

    name: str
    weights: str
    ranges: str
    pt: bool = False

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise ValueError(f"Condition {self.name!r}: weights must be one of {WEIGHTS}, got {self.weights!r}")
        if self.ranges not in RANGES:
            raise ValueError(f"Condition {self.name!r}: ranges must be one of {RANGES}, got {self.ranges!r}")
        if self.ranges == "float" and (self.pt or self.weights != "FP"):
            raise ValueError(f"Condition {self.name!r}: ranges 'float' is the FP model's own score, without PT")
        if self.ranges == "HWA" and self.weights != "full HWA":
            raise ValueError(f"Condition {self.name!r}: only full HWA learns ranges, not {self.weights!r}")

    @property
    def analog(self) -> bool:
        """Whether the condition is scored on simulated chips (every condition but the float model)."""
        return self.ranges != "float"


FP = Condition(name="FP", weights="FP", ranges="float")
"""The float model."""
NAIVE = Condition(name="naive", weights="FP", ranges="naive")
"""FP weights on analog tiles with naive ranges (gamma = column abs-max, beta from input statistics)."""
PT = Condition(name="PT", weights="FP", ranges="naive", pt=True)
"""FP weights, naive ranges PT-optimised (the paper's method)."""
FULL_HWA = Condition(name="full HWA", weights="full HWA", ranges="HWA")
"""Full-HWA-trained weights with the DAC ranges learned in training."""
REDUCED_HWA_PT = Condition(name="reduced HWA + PT", weights="reduced HWA", ranges="naive", pt=True)
"""Weight-noise-trained (reduced HWA) weights, naive ranges PT-optimised."""
FULL_HWA_PT = Condition(name="full HWA + PT", weights="full HWA", ranges="HWA", pt=True)
"""Full-HWA weights, their learned ranges PT-optimised."""
CONDITIONS = (FP, NAIVE, PT, FULL_HWA, REDUCED_HWA_PT, FULL_HWA_PT)
"""The paper's conditions; the FP-weight ones first, so that they finish before any HWA training."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudySettings:
    """The numbers of a study; every one that a unit depends on enters that unit's cache key.

    Attributes:
      times: drift times in seconds (floats: they enter the keys as JSON).
      seeds: chips 0..seeds-1, the same in every condition (seed k = chip k); at least 2.
      chunk: seeds per cached evaluation cell.
      max_eval: scored examples per task (a seeded subset when the eval split is larger).
      calib: training examples for the naive ranges and for PT.
      pt_steps: PT steps.
      pt_lr: PT's peak Adam rate on log ranges (cosine-decayed to a tenth).
      pt_batch: PT batch size.
      hwa_max_train: HWA trains one epoch on a seeded subset of at most this many examples (None: all).
      hwa_range_rule: full HWA's DAC-range rule (`HWAConfig.range_rule`: "ibm" or "lsq").
    """

    times: tuple[float, ...] = TIMES
    seeds: int = 10
    chunk: int = 5
    max_eval: int = 500
    calib: int = 512
    pt_steps: int = 100
    pt_lr: float = 0.05
    pt_batch: int = 32
    hwa_max_train: int | None = 10_000
    hwa_range_rule: str = "ibm"

    def __post_init__(self):
        object.__setattr__(self, "times", tuple(float(t) for t in self.times))
        if not self.times or any(not t >= 0 for t in self.times):
            raise ValueError(f"StudySettings: times must be >= 0 seconds, got {self.times}")
        for name in ("seeds", "chunk", "max_eval", "calib", "pt_steps", "pt_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"StudySettings: {name} must be >= 1, got {getattr(self, name)}")
        if self.seeds < 2:  # before any training or evaluation, not after hours of it
            raise ValueError(
                f"StudySettings: seeds must be >= 2 (the claims are paired CIs over chips), got {self.seeds}"
            )
        if self.hwa_max_train is not None and self.hwa_max_train < 1:
            raise ValueError(f"StudySettings: hwa_max_train must be >= 1 or None, got {self.hwa_max_train}")
        if not self.pt_lr > 0:
            raise ValueError(f"StudySettings: pt_lr must be > 0, got {self.pt_lr}")
        if self.hwa_range_rule not in ("ibm", "lsq"):
            raise ValueError(f"StudySettings: hwa_range_rule must be 'ibm' or 'lsq', got {self.hwa_range_rule!r}")

    @property
    def seed_list(self) -> list[int]:
        """The chips: [0, ..., seeds - 1]."""
        return list(range(self.seeds))
