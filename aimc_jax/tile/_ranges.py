"""The post-training range parameters of one layer: column conductance ranges and DAC ranges.

`Ranges` is a pytree (column = gamma, input = beta, output = optional ADC bound);
`init_ranges` gives the naive starting point: column abs-max per input block and a
DAC range from input statistics (or 3.0 without them).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from aimc_jax._checks import check_finite, check_positive
from aimc_jax.tile._config import TileConfig
from aimc_jax.tile._layout import TileLayout, split_last, tile_layout

__all__ = ["DEFAULT_INPUT_RANGE", "INPUT_STD_ALPHA", "WEIGHT_MAPPINGS", "Ranges", "init_ranges"]

DEFAULT_INPUT_RANGE = 3.0  # aihwkit's input range `init_value`
INPUT_STD_ALPHA = 3.0  # aihwkit's `init_std_alpha`
WEIGHT_MAPPINGS = ("column", "tile")  # gamma: abs-max per (input block, column), or per crossbar


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Ranges:
    """Range parameters of one analog layer (all positive, in the weight/input units).

    Attributes:
      column: gamma, shape (n_in_blocks, out_features): conductance range of each
        column inside each input block; weights map to g = g_max * clip(W / gamma, -1, 1).
      input: beta, shape (n_in_blocks, n_out_blocks): DAC input range per crossbar.
      output: optional ADC bound per crossbar, shape (n_in_blocks, n_out_blocks) or
        scalar, in normalised output units; None takes `TileConfig.out_bound`.

    References:
      Lammie et al., "Improving the Accuracy of Analog-Based In-Memory Computing
      Accelerators Post-Training", ISCAS 2024 (arXiv 2401.09859).
    """

    column: jax.Array
    input: jax.Array
    output: jax.Array | None = None

    def replace(self, **changes) -> Ranges:
        return dataclasses.replace(self, **changes)


def check_ranges(ranges: Ranges, layout: TileLayout, where: str) -> None:
    """Shape and (when concrete) positivity checks of `ranges` against a layout."""
    if not isinstance(ranges, Ranges):
        raise TypeError(f"{where}: ranges must be aimc_jax.Ranges, got {type(ranges).__name__}")
    expected = {
        "column": (layout.n_in, layout.out_features),
        "input": (layout.n_in, layout.n_out),
    }
    for name, shape in expected.items():
        got = tuple(jnp.shape(getattr(ranges, name)))
        if got != shape:
            raise ValueError(
                f"{where}: ranges.{name} has shape {got}, expected {shape} for a "
                f"{layout.in_features}x{layout.out_features} weight "
                f"({layout.n_in}x{layout.n_out} crossbars)"
            )
    if ranges.output is not None:
        got = tuple(jnp.shape(ranges.output))
        if got not in ((), (layout.n_in, layout.n_out)):
            raise ValueError(f"{where}: ranges.output has shape {got}, expected () or {(layout.n_in, layout.n_out)}")
    for name in ("column", "input", "output"):
        check_positive(getattr(ranges, name), f"{where}: ranges.{name}")


def init_ranges(weight, config: TileConfig, *, inputs=None, weight_mapping: str = "column") -> Ranges:
    """Naive ranges: column abs-max per input block; DAC range from input statistics.

    Args:
      weight: (in_features, out_features) kernel.
      config: the tile config (gives the crossbar split).
      inputs: optional calibration inputs (..., in_features). Per input block a,
        beta[a, :] = min(max|x_a|, 3 * std(x_a)) (aihwkit's `init_std_alpha` = 3,
        never wider than the largest input seen); without inputs beta = 3.0.
      weight_mapping: how gamma maps weights to conductances. "column" (default):
        the abs-max of each column inside each input block (aihwkit's
        `weight_scaling_omega=1, weight_scaling_columnwise=True`, the HWA preset's
        mapping); "tile": one abs-max per crossbar, shared by its columns (a plain
        `InferenceRPUConfig` mapping), which leaves small columns at small
        conductances (larger relative noise).

    Returns:
      `Ranges` with `output=None`. All-zero columns or inputs get range 1.0.
    """
    weight = jnp.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"init_ranges: weight must be 2-D (in, out), got shape {weight.shape}")
    check_finite(weight, "init_ranges: weight")
    if weight_mapping not in WEIGHT_MAPPINGS:
        raise ValueError(f"init_ranges: weight_mapping must be one of {WEIGHT_MAPPINGS}, got {weight_mapping!r}")
    layout = tile_layout(*weight.shape, config)
    blocks = split_last(jnp.abs(weight).T, layout.in_sizes)  # (out, n_in, bi)
    gamma = jnp.max(blocks, axis=-1).T  # (n_in, out)
    if weight_mapping == "tile":  # the crossbar's abs-max for each of its columns
        per_tile = jnp.max(split_last(gamma, layout.out_sizes, fill=0.0), axis=-1)  # (n_in, n_out)
        gamma = jnp.repeat(per_tile, np.asarray(layout.out_sizes), axis=1, total_repeat_length=layout.out_features)
    gamma = jnp.where(gamma > 0, gamma, 1.0).astype(jnp.float32)
    if inputs is None:
        beta = jnp.full((layout.n_in, layout.n_out), DEFAULT_INPUT_RANGE, jnp.float32)
    else:
        inputs = jnp.asarray(inputs, jnp.float32)
        if inputs.shape[-1] != layout.in_features:
            raise ValueError(
                f"init_ranges: inputs have {inputs.shape[-1]} features, the weight has {layout.in_features} inputs"
            )
        check_finite(inputs, "init_ranges: inputs")
        if inputs.size == 0:
            raise ValueError(
                f"init_ranges: the calibration inputs have no rows (shape {inputs.shape}); "
                "pass inputs=None for the default beta, or collect some calibration batches"
            )
        x = split_last(inputs.reshape(-1, layout.in_features), layout.in_sizes)  # (N, n_in, bi)
        beta_in = jnp.stack([_input_range(x[:, a, :size]) for a, size in enumerate(layout.in_sizes)])  # (n_in,)
        beta = jnp.broadcast_to(beta_in[:, None], (layout.n_in, layout.n_out))
    return Ranges(column=gamma, input=beta)


def _input_range(x):
    r = jnp.minimum(jnp.max(jnp.abs(x)), INPUT_STD_ALPHA * jnp.std(x))
    return jnp.where(r > 0, r, 1.0)
