"""Evaluation: float and Monte-Carlo analog scores over seeds and drift times, and results files.

`evaluate_analog(module, variables, ranges, batches, split, config, times=..., seeds=10)`
-> `MCResult` (every per-seed value); `fp_rows`/`mc_rows` + `write_results` write
JSON, Markdown and a plot stamped with `run_metadata()`.
"""

from aimc_jax.evaluation._montecarlo import MCResult, evaluate_analog, evaluate_float, model_outputs, seed_keys
from aimc_jax.evaluation._results import format_time, fp_rows, mc_rows, read_results, run_metadata, write_results
from aimc_jax.evaluation._stats import paired_ci

__all__ = [
    "MCResult",
    "evaluate_analog",
    "evaluate_float",
    "format_time",
    "fp_rows",
    "mc_rows",
    "model_outputs",
    "paired_ci",
    "read_results",
    "run_metadata",
    "seed_keys",
    "write_results",
]
