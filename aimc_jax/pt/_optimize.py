"""The post-training loop: optimise (a subset of) the ranges with any optax transformation.

    result = optimize_ranges(objective, ranges, batches, optax.adam, learning_rate=1e-2, steps=200, key=key)
    result.ranges, result.losses

Ranges are optimised in log space (range = exp(theta), the transform of
`aimc_jax._logspace` that full HWA's ranges use too), so they stay positive
whatever the optimiser does; only the chosen `fields` of the chosen `layers`
enter the optimiser (everything else, network weights included, is frozen by
construction). Step s draws a fresh chip from `fold_in(key, s)` and uses batch
`s mod len(batches)`. The jitted step is shared by every call with the same
objective, optimiser and shapes; learning rates are data. A non-finite loss or range stops the run with `PTDiverged`,
which carries the last finite ranges; NaN ranges are never returned.

References:
  Lammie et al., ISCAS 2024 (arXiv 2401.09859), Sec. III (PT of column and DAC ranges).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from aimc_jax._checks import checked, require_key
from aimc_jax._logspace import from_log, log_step, to_log
from aimc_jax.pt._objectives import Objective
from aimc_jax.tile import Ranges

__all__ = ["FIELDS", "PTDiverged", "PTResult", "merge_ranges", "optimize_ranges", "split_ranges"]

FIELDS = ("column", "input", "output")
"""The `Ranges` fields PT can optimise: gamma, beta and the ADC bound."""


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
            theta[name][f] = v
    return to_log(theta)


def merge_ranges(ranges: Mapping[str, Ranges], theta: Mapping) -> dict:
    """`ranges` with the fields in theta replaced by exp(theta)."""
    return _replaced(ranges, from_log(theta))


def _replaced(ranges: Mapping[str, Ranges], values: Mapping) -> dict:
    """`ranges` with the fields in `values` ({layer: {field: range}}) replaced."""
    out = dict(ranges)
    for name, fields in values.items():
        out[name] = ranges[name].replace(**fields)
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


@dataclasses.dataclass(frozen=True)
class _Injected:
    """An optax factory run through `optax.inject_hyperparams`: its learning rate is data, fed per step."""

    factory: Callable
    hyperparams: tuple[tuple[str, Any], ...] = ()

    def build(self) -> optax.GradientTransformation:
        return optax.inject_hyperparams(self.factory)(learning_rate=0.0, **dict(self.hyperparams))


def _transformation(tx) -> optax.GradientTransformation:
    return tx.build() if isinstance(tx, _Injected) else tx


MAX_LOG_CHANGE = 30.0  # a range further than e^30 from its start counts as diverged


@functools.cache
def _checked_fn(fn):
    """`fn` in the checked mode, built once per objective function (its compilation is reused)."""
    return checked(fn)


@functools.partial(jax.jit, static_argnames=("fn", "tx"))
def _pt_step(theta, opt_state, ranges, batch, key, frozen, learning_rate, theta0, *, fn, tx):
    """One PT step: loss and gradient on log ranges, optimiser update, finiteness of loss and new ranges.

    Module-level and keyed only on (objective function, optimiser) and the shapes,
    so repeated `optimize_ranges` calls, new learning rates and schedules reuse it.
    """

    def loss_fn(values):
        return fn(_replaced(ranges, values), batch, key, frozen)

    values = from_log(theta)
    loss, grads = jax.value_and_grad(loss_fn)(values)
    transformation = _transformation(tx)
    if isinstance(tx, _Injected):
        opt_state.hyperparams["learning_rate"] = learning_rate
    updates, opt_state = log_step(transformation, grads, opt_state, values, log_params=theta)
    new = optax.apply_updates(theta, updates)
    leaves = jax.tree.leaves(from_log(new))
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v) & (v > 0)) for v in leaves]))
    moved = jax.tree.map(lambda a, b: jnp.all(jnp.abs(a - b) <= MAX_LOG_CHANGE), new, theta0)
    ok = ok & jnp.all(jnp.stack(jax.tree.leaves(moved)))
    return new, opt_state, loss, jnp.isfinite(loss) & ok


def _learning_rates(learning_rate, steps: int) -> np.ndarray:
    """Per-step rates as data: a float, a (steps,) array, or a schedule f(step) evaluated on 0..steps-1."""
    if callable(learning_rate):
        rates = np.asarray([learning_rate(s) for s in range(steps)], np.float32)
    else:
        rates = np.asarray(learning_rate, np.float32)
        rates = np.full(steps, rates, np.float32) if rates.ndim == 0 else rates
    if rates.shape != (steps,) or not np.all(np.isfinite(rates)):
        raise ValueError(f"learning_rate must be a finite float, a ({steps},) array or a schedule, got {rates.shape}")
    return rates


def optimize_ranges(
    objective: Objective | Callable,
    ranges: Mapping[str, Ranges],
    batches: Sequence,
    optimizer: optax.GradientTransformation | Callable = optax.adam,
    *,
    steps: int,
    key,
    learning_rate=None,
    hyperparams: Mapping[str, Any] | None = None,
    fields: Sequence[str] = ("column", "input"),
    layers: str | Sequence[str] | None = None,
    progress: bool = True,
    callback: Callable[[int, float, dict], None] | None = None,
    checked: bool = False,
) -> PTResult:
    """Minimise `objective` over the ranges by gradient descent with fresh hardware noise per step.

    The step is compiled once per (objective, optimiser, shapes) and reused across
    calls. Pass an optax *factory* with `learning_rate` (e.g. `optax.adam,
    learning_rate=0.05` or an optax schedule) to try new rates and schedules
    without compiling again: the rate of every step is fed as data
    (`optax.inject_hyperparams`). A ready `GradientTransformation` also works; it is
    compiled once per distinct object (a new `optax.adam(0.01)` compiles again).

    Args:
      objective: an `Objective` (or a plain `f(ranges, batch, key) -> scalar`; wrap
        it once and reuse it: a new function object compiles again).
      ranges: {layer: Ranges} starting point (e.g. `calibrated_ranges`, or HWA-learned).
      batches: what the objective takes as `batch`; step s uses batches[s % len].
      optimizer: an optax factory taking `learning_rate` (default `optax.adam`), or
        any optax `GradientTransformation` (acting on log ranges).
      steps: optimisation steps.
      key: PRNG key; step s uses `fold_in(key, s)` (a new chip each step).
      learning_rate: with a factory: a float, a (steps,) array of per-step rates, or
        a schedule `f(step) -> rate` (evaluated here, on steps 0..steps-1).
      hyperparams: with a factory: its other numeric arguments (e.g. {"b1": 0.8}).
      fields: subset of ("column", "input", "output") to optimise; gamma, beta, ADC bound.
      layers: glob pattern(s) of layers to optimise (default all).
      progress: progress bar.
      callback: called as `callback(step, loss, ranges)` every step (ranges only every 10 steps, else None).
      checked: first evaluate the objective on the first batch in the checked mode
        (`aimc_jax.checked`): NaN/inf weights or layer inputs, out-of-range token ids
        and bad drift times, hidden by jit, raise `checkify.JaxRuntimeError` naming
        the culprit. One extra compilation (cached per objective).

    Returns:
      `PTResult`. Raises `PTDiverged` (with the last finite ranges) on a non-finite
      loss, or when an update makes a range non-finite or zero or moves it more than e^30 from its start.
    """
    require_key(key, "optimize_ranges()")
    fields = (fields,) if isinstance(fields, str) else tuple(fields)
    bad = [f for f in fields if f not in FIELDS]
    if bad or not fields:
        raise ValueError(f"fields must be a non-empty subset of {FIELDS}, got {fields}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not batches:
        raise ValueError("optimize_ranges needs at least one batch")
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None or hyperparams:
            raise ValueError(
                "learning_rate/hyperparams go with an optax factory (e.g. optax.adam), "
                "not with a ready GradientTransformation"
            )
        tx, rates = optimizer, np.zeros(steps, np.float32)
    elif callable(optimizer):
        if learning_rate is None:
            raise ValueError("optimize_ranges(optimizer=<factory>) needs learning_rate=")
        tx = _Injected(optimizer, tuple(sorted((hyperparams or {}).items())))
        rates = _learning_rates(learning_rate, steps)
    else:
        raise TypeError(f"optimizer must be an optax GradientTransformation or factory, got {type(optimizer).__name__}")
    for name, r in ranges.items():
        for f in FIELDS:
            v = getattr(r, f)
            if v is not None and not (np.all(np.isfinite(np.asarray(v))) and np.all(np.asarray(v) > 0)):
                raise ValueError(f"initial ranges of {name}.{f} must be finite and > 0")
    layer_names = select_layers(ranges, layers)
    if not isinstance(objective, Objective):
        objective = Objective(_Plain(objective))
    theta = theta0 = split_ranges(ranges, fields, layer_names)
    opt_state = _transformation(tx).init(theta)
    ranges = dict(ranges)
    if checked and steps:
        first = jax.tree.map(jnp.asarray, batches[0])
        _checked_fn(objective.fn)(ranges, first, jax.random.fold_in(key, 0), objective.frozen)
    losses = []
    bar = tqdm(range(steps), desc="PT ranges", disable=not progress, unit="step")
    for s in bar:
        batch = jax.tree.map(jnp.asarray, batches[s % len(batches)])
        new, opt_state, loss, finite = _pt_step(
            theta,
            opt_state,
            ranges,
            batch,
            jax.random.fold_in(key, s),
            objective.frozen,
            rates[s],
            theta0,
            fn=objective.fn,
            tx=tx,
        )
        loss = float(loss)
        losses.append(loss)
        if not bool(finite):
            bar.close()
            last = merge_ranges(ranges, theta)
            raise PTDiverged(
                f"PT diverged at step {s}: loss {loss}, or a range became non-finite or zero or moved more than "
                f"e^{MAX_LOG_CHANGE:g} from its start; "
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


@dataclasses.dataclass(frozen=True)
class _Plain:
    """A plain `f(ranges, batch, key)` as an objective function (hashable by `f`, so one `f` compiles once)."""

    f: Callable

    def __call__(self, ranges, batch, key, frozen):
        return self.f(ranges, batch, key)
