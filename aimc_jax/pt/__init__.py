"""Post-training (PT) optimisation of the column conductance ranges and DAC ranges.

    obj = task_objective(module, variables, config, "SST-2", t=3600.0)   # or distillation / layer-wise
    res = optimize_ranges(obj, calibrated_ranges(variables, config, calib), batches, optax.adam(1e-2),
                          steps=200, key=jax.random.key(0))
    save_ranges("ranges.npz", res.ranges, config=config, variables=variables)

The main job's recipe in one call (task loss, Adam on log ranges, cosine schedule):
`optimize_task_ranges(module, variables, ranges, fixed_length_batches(encoded, 32), config, task,
times=..., steps=40)`.

References:
  Lammie, Vasilopoulos et al., "Improving the Accuracy of Analog-Based In-Memory
  Computing Accelerators Post-Training", ISCAS 2024 (arXiv 2401.09859).
"""

from aimc_jax.models._calibrate import INPUT_METHODS, calibrated_ranges, with_output_ranges
from aimc_jax.pt._io import load_ranges, model_fingerprint, read_meta, save_ranges
from aimc_jax.pt._objectives import (
    Objective,
    distillation_objective,
    draw_time,
    layer_input_batches,
    layerwise_objective,
    task_objective,
)
from aimc_jax.pt._optimize import (
    FIELDS,
    PTDiverged,
    PTResult,
    merge_ranges,
    optimize_ranges,
    select_layers,
    split_ranges,
)
from aimc_jax.pt._recipe import PT_SEED, fixed_length_batches, optimize_task_ranges, recipe_record

__all__ = [
    "FIELDS",
    "INPUT_METHODS",
    "PT_SEED",
    "Objective",
    "PTDiverged",
    "PTResult",
    "calibrated_ranges",
    "distillation_objective",
    "draw_time",
    "fixed_length_batches",
    "layer_input_batches",
    "layerwise_objective",
    "load_ranges",
    "merge_ranges",
    "model_fingerprint",
    "optimize_ranges",
    "optimize_task_ranges",
    "read_meta",
    "recipe_record",
    "save_ranges",
    "select_layers",
    "split_ranges",
    "task_objective",
    "with_output_ranges",
]
