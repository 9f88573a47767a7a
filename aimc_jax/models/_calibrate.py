"""Calibration baselines for the ranges: column abs-max, DAC range from input statistics.

    ranges = calibrated_ranges(variables, config, calibration, method="percentile", q=99.9)

These are the starting points (and the baselines) of post-training optimisation:
gamma = column abs-max per input block (`init_ranges`); beta per input block from
the calibration inputs of the layer:
  "naive"      min(max|x|, 3 std x)      (aimc_jax.init_ranges, aihwkit init_std_alpha = 3)
  "max"        max|x|                    (no input clipping)
  "percentile" q-th percentile of |x|
  "std"        |mean x| + k std x        (aihwkit-style, k = 3)

References:
  aihwkit 1.2.0 / aihwkit-lightning input-range initialisation (`init_from_data`,
  `init_std_alpha`); Lammie et al., ISCAS 2024 (naive baselines for PT).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from aimc_jax.models._analog import ConfigLike, analog_layers, init_model_ranges
from aimc_jax.tile import Ranges, tile_layout

__all__ = ["INPUT_METHODS", "calibrated_ranges", "with_output_ranges"]

INPUT_METHODS = ("naive", "max", "percentile", "std")
"""The rules `calibrated_ranges` knows for the DAC ranges beta."""


def _block_range(x: np.ndarray, method: str, k: float, q: float) -> float:
    a = np.abs(x)
    if method == "max":
        r = a.max()
    elif method == "percentile":
        r = np.percentile(a, q)
    elif method == "std":
        r = abs(x.mean()) + k * x.std()
    else:  # naive
        r = min(a.max(), 3.0 * x.std())
    return float(r) if np.isfinite(r) and r > 0 else 1.0


def calibrated_ranges(
    variables,
    config: ConfigLike,
    calibration: Mapping[str, np.ndarray],
    *,
    method: str = "naive",
    k: float = 3.0,
    q: float = 99.9,
    weight_mapping: str = "column",
) -> dict[str, Ranges]:
    """Ranges with gamma = column abs-max and beta from calibration inputs by `method`.

    Args:
      variables: the model's variables.
      config: `TileConfig` or `LayerConfigs`.
      calibration: {layer: inputs (rows, in)} from `collect_layer_inputs`; every
        analog layer needs an entry.
      method: one of `INPUT_METHODS`.
      k: std multiplier for "std".
      q: percentile for "percentile" (0-100).
      weight_mapping: gamma per (input block, column) ("column", default) or per crossbar
        ("tile"); see `aimc_jax.init_ranges`.
    """
    if method not in INPUT_METHODS:
        raise ValueError(f"method must be one of {INPUT_METHODS}, got {method!r}")
    if not 0 < q <= 100:
        raise ValueError(f"percentile q must be in (0, 100], got {q}")
    layers = analog_layers(variables, config)
    missing = sorted(set(layers) - set(calibration))
    if missing:
        raise ValueError(f"calibration inputs missing for {len(missing)} analog layers, e.g. {missing[:3]}")
    ranges = init_model_ranges(variables, config, weight_mapping=weight_mapping)
    out = {}
    for name, (w, cfg) in layers.items():
        layout = tile_layout(*w.shape, cfg)
        x = np.asarray(calibration[name], np.float32).reshape(-1, layout.in_features)
        edges = np.cumsum((0, *layout.in_sizes))
        beta = np.array([_block_range(x[:, lo:hi], method, k, q) for lo, hi in itertools.pairwise(edges)])
        out[name] = ranges[name].replace(
            input=np.broadcast_to(beta[:, None], (layout.n_in, layout.n_out)).astype(np.float32)
        )
    return out


def with_output_ranges(ranges: Mapping[str, Ranges], config: ConfigLike, variables) -> dict[str, Ranges]:
    """Fill `Ranges.output` (the ADC bound per crossbar) from the config's `out_bound`, to optimise it too."""
    layers = analog_layers(variables, config)
    out = {}
    for name, r in ranges.items():
        if r.output is not None:
            out[name] = r
            continue
        cfg = layers[name][1]
        if cfg.out_bound is None:
            raise ValueError(f"{name}: the config has no ADC bound (out_bound=None) to start the output range from")
        out[name] = r.replace(output=np.full(np.shape(r.input), cfg.out_bound, np.float32))
    return out
