"""Post-training (PT) optimisation of the column conductance ranges and DAC ranges.

    obj = task_objective(module, variables, config, "SST-2", t=3600.0)   # or distillation / layer-wise
    res = optimize_ranges(obj, calibrated_ranges(variables, config, calib), batches, optax.adam(1e-2),
                          steps=200, key=jax.random.key(0))
    save_ranges("ranges.npz", res.ranges, config=config, variables=variables)

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

__all__ = [
    "FIELDS",
    "INPUT_METHODS",
    "Objective",
    "PTDiverged",
    "PTResult",
    "calibrated_ranges",
    "distillation_objective",
    "draw_time",
    "layer_input_batches",
    "layerwise_objective",
    "load_ranges",
    "merge_ranges",
    "model_fingerprint",
    "optimize_ranges",
    "read_meta",
    "save_ranges",
    "select_layers",
    "split_ranges",
    "task_objective",
    "with_output_ranges",
]
