"""The paper's protocol as an API: conditions and claims as data, cached resumable units, paired verdicts.

    study = run_study(["MRPC"], StudySettings(seeds=10), report=lambda s: write_report(out, s, settings, config,
                                                                                      title="..."))
    for check in check_claim(CLAIMS[0], study.results["MRPC"], "f1"):
        print(check.time, check.mean, check.lower, check.upper, check.verdict)

A `Condition` names its weights (FP, full or reduced HWA) and ranges (float, naive,
HWA-learned), optionally PT-optimised; a `Claim` is a paired difference of two
conditions against a bar. Every unit (HWA model, PT ranges, evaluation cell of a few
chips) is cached under `cache_dir()` by a key of its settings, so a study resumes
where it stopped and `cached_only=True` reports what is finished. See docs/study.md.

References:
  Lammie, Vasilopoulos et al., "Improving the Accuracy of Analog-Based In-Memory
  Computing Accelerators Post-Training", ISCAS 2024 (arXiv 2401.09859).
"""

from aimc_jax.study._claims import CLAIMS, PT_GAIN, Claim, ClaimCheck, check_claim, claims_table, plot_claims
from aimc_jax.study._conditions import (
    CONDITIONS,
    FP,
    FULL_HWA,
    FULL_HWA_PT,
    NAIVE,
    PT,
    REDUCED_HWA_PT,
    TIMES,
    Condition,
    StudySettings,
)
from aimc_jax.study._report import headline_table, range_changes, write_report
from aimc_jax.study._run import StudyResult, condition_units, run_study
from aimc_jax.study._units import (
    NotCached,
    evaluation_identity,
    evaluation_path,
    evaluation_unit,
    hwa_unit,
    naive_ranges,
    pt_identity,
    pt_path,
    pt_unit,
    ranges_tag,
    scored_split,
    tag,
)

__all__ = [
    "CLAIMS",
    "CONDITIONS",
    "FP",
    "FULL_HWA",
    "FULL_HWA_PT",
    "NAIVE",
    "PT",
    "PT_GAIN",
    "REDUCED_HWA_PT",
    "TIMES",
    "Claim",
    "ClaimCheck",
    "Condition",
    "NotCached",
    "StudyResult",
    "StudySettings",
    "check_claim",
    "claims_table",
    "condition_units",
    "evaluation_identity",
    "evaluation_path",
    "evaluation_unit",
    "headline_table",
    "hwa_unit",
    "naive_ranges",
    "plot_claims",
    "pt_identity",
    "pt_path",
    "pt_unit",
    "range_changes",
    "ranges_tag",
    "run_study",
    "scored_split",
    "tag",
    "write_report",
]
