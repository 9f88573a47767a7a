"""Evaluation: float and Monte-Carlo analog scores over seeds and drift times, and results files.

`evaluate_analog(module, variables, ranges, batches, split, config, times=..., seeds=10)`
-> `MCResult` (every per-seed value); `fp_rows`/`mc_rows` + `write_results` write
JSON, Markdown and a plot stamped with `run_metadata()`; `comparison_table` prints conditions
on the same chips side by side with their paired difference. Statistics: `paired_ci` (over
chips), `seed_ci` / `hierarchical_bootstrap_ci` (over training seeds and chips),
`equivalence` (TOST) and `superiority`.
"""

from aimc_jax.evaluation._compare import comparison_table
from aimc_jax.evaluation._montecarlo import MCResult, evaluate_analog, evaluate_float, model_outputs, seed_keys
from aimc_jax.evaluation._results import format_time, fp_rows, mc_rows, read_results, run_metadata, write_results
from aimc_jax.evaluation._stats import equivalence, hierarchical_bootstrap_ci, paired_ci, seed_ci, superiority

__all__ = [
    "MCResult",
    "comparison_table",
    "equivalence",
    "evaluate_analog",
    "evaluate_float",
    "format_time",
    "fp_rows",
    "hierarchical_bootstrap_ci",
    "mc_rows",
    "model_outputs",
    "paired_ci",
    "read_results",
    "run_metadata",
    "seed_ci",
    "seed_keys",
    "superiority",
    "write_results",
]
