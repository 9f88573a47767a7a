"""The post-training loop: optimise (a subset of) the ranges with any optax transformation.

    result = optimize_ranges(objective, ranges, batches, optax.adam(1e-2), steps=200, key=key)
    result.ranges, result.losses

Ranges are optimised in log space (range = exp(theta)), so they stay positive
whatever the optimiser does; only the chosen `fields` of the chosen `layers`
enter the optimiser (everything else, network weights included, is frozen by
construction). Step s draws a fresh chip from `fold_in(key, s)` and uses batch
`s mod len(batches)`. A non-finite loss or range stops the run with `PTDiverged`,
which carries the last finite ranges; NaN ranges are never returned.

References:
  Lammie et al., ISCAS 2024 (arXiv 2401.09859), Sec. III (PT of column and DAC ranges).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from aimc_jax._ranges import Ranges
from aimc_jax.pt._objectives import Objective

__all__ = ["FIELDS", "PTDiverged", "PTResult", "merge_ranges", "optimize_ranges", "split_ranges"]

FIELDS = ("column", "input", "output")


class PTDiverged(FloatingPointError):
    """The PT loss or a range became non-finite; `.ranges` holds the last finite ranges, `.step` the step."""

    def __init__(self, message: str, ranges, step: int, losses):
        super().__init__(message)
        self.ranges, self.step, self.losses = ranges, step, losses


@dataclasses.dataclass(frozen=True)
class PTResult:
    """Optimised ranges and the loss trace.

    Attributes:
      ranges: {layer: Ranges}, the initial ranges with the optimised fields replaced.
      losses: (steps,) loss at every step (each with its own chip).
      fields: the optimised fields.
      layers: the optimised layers.
    """

    ranges: dict
    losses: np.ndarray
    fields: tuple[str, ...]
    layers: tuple[str, ...]


def split_ranges(ranges: Mapping[str, Ranges], fields: Sequence[str], layers: Sequence[str]) -> dict:
    """theta = {layer: {field: log(range)}} for the trained fields/layers."""
    theta = {}
    for name in layers:
        r = ranges[name]
        theta[name] = {}
        for f in fields:
            v = getattr(r, f)
            if v is None:
                raise ValueError(
                    f"{name}: ranges.{f} is None; fill it first (e.g. aimc_jax.pt.with_output_ranges) to optimise it"
                )
            theta[name][f] = jnp.log(jnp.asarray(v, jnp.float32))
    return theta


def merge_ranges(ranges: Mapping[str, Ranges], theta: Mapping) -> dict:
    """`ranges` with the fields in theta replaced by exp(theta)."""
    out = dict(ranges)
    for name, fields in theta.items():
        out[name] = ranges[name].replace(**{f: jnp.exp(v) for f, v in fields.items()})
    return out


def select_layers(names, layers) -> tuple[str, ...]:
    """The names matching `layers` (a glob pattern or several; None: all), as `optimize_ranges(layers=)` picks them.

    Raises:
      ValueError: no name matches.
    """
    if layers is None:
        return tuple(names)
    patterns = (layers,) if isinstance(layers, str) else tuple(layers)
    chosen = tuple(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))
    if not chosen:
        raise ValueError(f"no analog layer matches {patterns}")
    return chosen


def optimize_ranges(
    objective: Objective | Callable,
    ranges: Mapping[str, Ranges],
    batches: Sequence,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    key,
    fields: Sequence[str] = ("column", "input"),
    layers: str | Sequence[str] | None = None,
    progress: bool = True,
    callback: Callable[[int, float, dict], None] | None = None,
) -> PTResult:
    """Minimise `objective` over the ranges by gradient descent with fresh hardware noise per step.

    Args:
      objective: an `Objective` (or a plain `f(ranges, batch, key) -> scalar`).
      ranges: {layer: Ranges} starting point (e.g. `calibrated_ranges`, or HWA-learned).
      batches: what the objective takes as `batch`; step s uses batches[s % len].
      optimizer: any optax `GradientTransformation` (acting on log ranges).
      steps: optimisation steps.
      key: PRNG key; step s uses `fold_in(key, s)` (a new chip each step).
      fields: subset of ("column", "input", "output") to optimise; gamma, beta, ADC bound.
      layers: glob pattern(s) of layers to optimise (default all).
      progress: progress bar.
      callback: called as `callback(step, loss, ranges)` every step (ranges only every 10 steps, else None).

    Returns:
      `PTResult`. Raises `PTDiverged` (with the last finite ranges) on a non-finite loss or range.
    """
    if key is None:
        raise TypeError("optimize_ranges() needs an explicit PRNG key: pass key=jax.random.key(seed)")
    fields = (fields,) if isinstance(fields, str) else tuple(fields)
    bad = [f for f in fields if f not in FIELDS]
    if bad or not fields:
        raise ValueError(f"fields must be a non-empty subset of {FIELDS}, got {fields}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not batches:
        raise ValueError("optimize_ranges needs at least one batch")
    for name, r in ranges.items():
        for f in FIELDS:
            v = getattr(r, f)
            if v is not None and not (np.all(np.isfinite(np.asarray(v))) and np.all(np.asarray(v) > 0)):
                raise ValueError(f"initial ranges of {name}.{f} must be finite and > 0")
    layer_names = select_layers(ranges, layers)
    if not isinstance(objective, Objective):
        plain = objective
        objective = Objective(lambda r, b, k, frozen: plain(r, b, k))
    theta = split_ranges(ranges, fields, layer_names)
    opt_state = optimizer.init(theta)
    fn = objective.fn

    @jax.jit
    def step_fn(theta, opt_state, ranges, batch, key, frozen):
        def loss_fn(th):
            return fn(merge_ranges(ranges, th), batch, key, frozen)

        loss, grads = jax.value_and_grad(loss_fn)(theta)
        updates, opt_state = optimizer.update(grads, opt_state, theta)
        new = optax.apply_updates(theta, updates)
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(new)]))
        return new, opt_state, loss, finite

    ranges = dict(ranges)
    losses = []
    bar = tqdm(range(steps), desc="PT ranges", disable=not progress, unit="step")
    for s in bar:
        batch = jax.tree.map(jnp.asarray, batches[s % len(batches)])
        new, opt_state, loss, finite = step_fn(
            theta, opt_state, ranges, batch, jax.random.fold_in(key, s), objective.frozen
        )
        loss = float(loss)
        losses.append(loss)
        if not bool(finite):
            bar.close()
            last = merge_ranges(ranges, theta)
            raise PTDiverged(
                f"PT diverged at step {s}: loss {loss}, or a range became non-finite; "
                "lower the learning rate. The exception's .ranges hold the last finite ranges.",
                last,
                s,
                np.asarray(losses),
            )
        theta = new
        if progress and s % 5 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4g}")
        if callback is not None:
            callback(s, loss, merge_ranges(ranges, theta) if s % 10 == 0 else None)
    return PTResult(
        ranges=merge_ranges(ranges, theta),
        losses=np.asarray(losses, np.float64),
        fields=fields,
        layers=layer_names,
    )
