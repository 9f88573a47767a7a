"""GLUE data: loaders for the official layout, metrics, length-bucketed batching.

`task_splits("SST-2")` -> (train, eval) `GlueSplit`s; `encode` + `make_batches`
turn a split into padded batches; `compute_metrics(task, logits, labels)` scores.
The data directory is an argument, else `$AIMC_GLUE_DIR`, else `../shared/data/glue`.
"""

from aimc_jax.data._batching import DEFAULT_BUCKETS, Encoded, encode, make_batches, unbatch
from aimc_jax.data._glue import TASKS, GlueSplit, TaskSpec, glue_dir, load_glue, task_spec, task_splits
from aimc_jax.data._losses import task_loss
from aimc_jax.data._metrics import compute_metrics, predictions
from aimc_jax.data._rotten import extract_rotten_tomatoes, rotten_tomatoes_splits

__all__ = [
    "DEFAULT_BUCKETS",
    "TASKS",
    "Encoded",
    "GlueSplit",
    "TaskSpec",
    "compute_metrics",
    "encode",
    "extract_rotten_tomatoes",
    "glue_dir",
    "load_glue",
    "make_batches",
    "predictions",
    "rotten_tomatoes_splits",
    "task_loss",
    "task_spec",
    "task_splits",
    "unbatch",
]
