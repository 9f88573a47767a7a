"""The main job's PT recipe: task loss, gamma and beta, Adam on log ranges, cosine schedule, a fresh chip per step.

    batches = fixed_length_batches(encode(calib, tokenizer, 128), 32)  # one padded length: one compilation
    result = optimize_task_ranges(module, variables, naive, batches, config, "SST-2", times=TIMES, steps=40)
    meta = recipe_record("SST-2", TIMES, steps=40, learning_rate=0.05, batch_size=32, seconds=128)

Shared by `experiments/main.py` and the `aimc-jax pt` / `aimc-jax compare` commands,
so both run the same optimisation from the same arguments.

References:
  Lammie, Vasilopoulos et al., ISCAS 2024 (arXiv 2401.09859), Sec. III.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import optax

from aimc_jax.data import DEFAULT_BUCKETS, Encoded, make_batches, task_spec
from aimc_jax.models._analog import ConfigLike
from aimc_jax.pt._objectives import task_objective
from aimc_jax.pt._optimize import PTResult, optimize_ranges

__all__ = ["PT_SEED", "fixed_length_batches", "optimize_task_ranges", "recipe_record"]

PT_SEED = 10_000
"""PT step s draws its chip from `fold_in(key(PT_SEED), s)`: never one of the evaluation chips 0..n-1."""
_FIELDS = ("column", "input")
_COUNTS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def fixed_length_batches(encoded: Encoded, batch_size: int, *, shuffle_seed: int = 0) -> list[dict]:
    """Shuffled training batches all padded to one length (the smallest bucket that holds the longest example),
    without the "index" entry: a PT step compiles once for all of them."""
    longest = int(encoded.lengths.max())
    length = next(b for b in (*DEFAULT_BUCKETS, longest) if b >= longest)
    return [
        {k: v for k, v in b.items() if k != "index"}
        for b in make_batches(encoded, batch_size, shuffle_seed=shuffle_seed, buckets=(length,))
    ]


def optimize_task_ranges(
    module,
    variables,
    ranges,
    batches: Sequence[dict],
    config: ConfigLike,
    task: str,
    *,
    times: Sequence[float],
    steps: int,
    learning_rate: float = 0.05,
    seed: int = PT_SEED,
    checked: bool = True,
    progress: bool = True,
) -> PTResult:
    """PT of gamma and beta on the task loss: Adam on log ranges, cosine decay from `learning_rate` to a tenth.

    Step s runs batch `s mod len(batches)` on a fresh chip drawn from `fold_in(key(seed), s)`,
    read at a drift time drawn from `times`.

    Args:
      module: the model.
      variables: its frozen weights.
      ranges: {layer: Ranges} to start from (e.g. the naive `init_model_ranges`).
      batches: labelled batches (`fixed_length_batches`).
      config: `TileConfig` or `LayerConfigs`.
      task: GLUE task name (selects the loss).
      times: drift times in seconds, one drawn per step.
      steps: optimisation steps (>= 1).
      learning_rate: peak Adam rate on log ranges.
      seed: the PT key's seed.
      checked: the first batch in the checked mode (`aimc_jax.checked`).
      progress: progress bar.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    objective = task_objective(module, variables, config, task, t=tuple(times))
    return optimize_ranges(
        objective,
        ranges,
        batches,
        optax.adam,
        learning_rate=optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1),
        steps=steps,
        key=jax.random.key(seed),
        fields=_FIELDS,
        checked=checked,  # bad values named, not scored
        progress=progress,
    )


def recipe_record(
    task: str,
    times: Sequence[float],
    *,
    steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int = PT_SEED,
    seconds: float | None = None,
) -> dict:
    """What `optimize_task_ranges` did, for `run_metadata(pt=...)` and the header of saved ranges."""
    loss = "squared error" if task_spec(task).is_regression else "cross-entropy"
    if len(times) == 1:
        drift = f"drift time {float(times[0]):g} s"
    else:
        drift = f"drift time drawn from the {_COUNTS.get(len(times), len(times))} per step"
    record = {
        "objective": f"task loss ({loss}), {drift}",
        "fields": list(_FIELDS),
        "optimizer": f"adam on log ranges, rate {learning_rate} cosine-decayed to {learning_rate / 10}",
        "steps": steps,
        "batch": batch_size,
        "key": seed,
    }
    if seconds is not None:
        record["seconds"] = round(seconds)
    return record
