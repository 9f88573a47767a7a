"""Post-training objectives: plain functions of (ranges, batch, key, frozen) -> scalar loss.

    obj = task_objective(module, variables, config, "SST-2", t=86400.0)
    loss = obj(ranges, batch, key)  # an `Objective` is callable

Every objective draws a fresh chip from `key` (programming, drift to time t, read
noise, output noise), so that minimising its expectation over keys optimises the
ranges for the hardware, not for one noise sample. `t` is a drift time in seconds
or a sequence of times, one drawn uniformly per call. The network weights travel
in `frozen` (passed to `jit` as an argument, never optimised).

A new objective is a few lines: `Objective(fn, frozen)` with
`fn(ranges, batch, key, frozen) -> scalar`; see notebooks/prototype_pt_objective.ipynb.

References:
  Lammie et al., ISCAS 2024 (arXiv 2401.09859); Hinton et al., Distilling the
  Knowledge in a Neural Network (2015).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from aimc_jax._checks import check_times
from aimc_jax.data import task_loss, task_spec
from aimc_jax.models._analog import ConfigLike, _layer_keys, analog_forward, analog_layers
from aimc_jax.tile import TileConfig, fresh_state, mvm

__all__ = [
    "Objective",
    "distillation_objective",
    "draw_time",
    "layer_input_batches",
    "layerwise_objective",
    "task_objective",
]


class Objective(NamedTuple):
    """A PT objective: `fn(ranges, batch, key, frozen) -> scalar`, with its frozen arrays.

    `frozen` (e.g. the network's variables) is passed to `fn` explicitly so that a
    jitted optimisation step takes it as an argument instead of baking it in as a
    constant.
    """

    fn: Callable
    frozen: Any = None

    def __call__(self, ranges, batch, key):
        return self.fn(ranges, batch, key, self.frozen)


def draw_time(t, key):
    """`t` itself, or (for a sequence) one of its entries drawn uniformly with `key`."""
    if isinstance(t, (int, float)) or np.ndim(t) == 0:
        return jnp.float32(t)
    times = jnp.asarray(np.asarray(t, np.float32))
    return times[jax.random.randint(key, (), 0, times.shape[0])]


def _check_times(t):
    check_times(t, "PT objective")


def _static_time(t):
    """t as a hashable static value: a float, or a tuple of floats (one drawn per call)."""
    _check_times(t)
    return float(t) if np.ndim(t) == 0 else tuple(float(v) for v in np.asarray(t).ravel())


# The objective functions are frozen dataclasses: equal settings hash equal, so a
# jitted PT step built for one is reused by a new objective with the same settings.


@dataclasses.dataclass(frozen=True)
class _ChipObjective:
    """What every whole-model objective shares: the model, its config, drift time(s), remat."""

    module: Any
    config: Any
    t: Any
    remat: bool

    def analog_out(self, ranges, batch, key, variables):
        """The model's outputs on a fresh chip drawn from `key` (and a drift time, if several)."""
        k_t, k = jax.random.split(key)
        return analog_forward(
            self.module, variables, ranges, batch["input_ids"], batch["attention_mask"], self.config,
            t=draw_time(self.t, k_t), key=k, token_type_ids=batch.get("token_type_ids"), remat=self.remat,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _TaskLoss(_ChipObjective):
    task: str

    def __call__(self, ranges, batch, key, variables):
        if "labels" not in batch:
            raise KeyError(f"task_objective({self.task}): the batch has no 'labels' (keys: {sorted(batch)})")
        out = self.analog_out(ranges, batch, key, variables)
        weight = batch.get("weight", jnp.ones(batch["input_ids"].shape[:1], jnp.float32))
        return task_loss(task_spec(self.task), out, batch["labels"], weight)


def task_objective(module, variables, config: ConfigLike, task, *, t, remat: bool = False) -> Objective:
    """Task loss of a fresh analog chip on labelled batches (cross-entropy, or MSE for STS-B).

    Batches: dicts from `aimc_jax.data.make_batches` (input_ids, attention_mask,
    token_type_ids, labels, weight; weight 1 when absent). `remat=True` recomputes each encoder layer in the
    backward pass instead of keeping its crossbars' intermediates (`analog_apply`'s
    `remat`): far less memory for about one more forward (roberta-base at 32 x 128
    needs it to stay within 8 GiB).
    """
    return Objective(_TaskLoss(module, config, _static_time(t), bool(remat), task_spec(task).name), variables)


@dataclasses.dataclass(frozen=True)
class _Distillation(_ChipObjective):
    temperature: float

    def __call__(self, ranges, batch, key, variables):
        module, temperature = self.module, self.temperature
        weight = batch.get("weight", jnp.ones(batch["input_ids"].shape[:1], jnp.float32))
        teacher = jax.lax.stop_gradient(
            module.apply(variables, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        )
        student = self.analog_out(ranges, batch, key, variables)
        if teacher.ndim == 2 and teacher.shape[-1] > 1:
            p = jax.nn.softmax(teacher / temperature)
            log_q = jax.nn.log_softmax(student / temperature)
            per = jnp.sum(p * (jnp.log(jnp.maximum(p, 1e-30)) - log_q), axis=-1) * temperature**2
        else:
            w_tok = batch["attention_mask"].astype(jnp.float32)[..., None] if teacher.ndim == 3 else 1.0
            err = jnp.sum((student - teacher) ** 2 * w_tok, axis=tuple(range(1, teacher.ndim)))
            ref = jnp.sum(teacher**2 * w_tok) / jnp.maximum(jnp.sum(weight), 1.0)
            per = err / jnp.maximum(ref, 1e-12)
        return jnp.sum(per * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def distillation_objective(
    module, variables, config: ConfigLike, *, t, temperature: float = 1.0, remat: bool = False
) -> Objective:
    """Distance of a fresh analog chip's outputs to the float model's (no labels needed).

    Classification heads: KL(softmax(teacher / T) || softmax(student / T)) * T^2.
    Regression heads (1 output) and encoders without a head: squared error
    relative to the teacher's mean square (over non-padding tokens for hidden states).
    The teacher is the float model with the same variables, run under `stop_gradient`.
    `remat`: as in `task_objective`.
    """
    t = _static_time(t)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return Objective(_Distillation(module, config, t, bool(remat), float(temperature)), variables)


@dataclasses.dataclass(frozen=True)
class _Layerwise:
    layers: tuple[tuple[str, TileConfig], ...]
    t: Any

    def __call__(self, ranges, batch, key, weights):
        k_t, k = jax.random.split(key)
        tt = draw_time(self.t, k_t)
        total = jnp.float32(0.0)
        keys = _layer_keys(k, [name for name, _ in self.layers if name in batch])
        for name, cfg in self.layers:
            if name not in batch:
                continue
            x, w = batch[name], weights[name]
            k1, k2, k3 = jax.random.split(keys[name], 3)
            state = fresh_state(w, ranges[name], tt, cfg, key_program=k1, key_read=k2)
            y = mvm(state, ranges[name], x, cfg, key=k3)
            ref = x @ w
            total = total + jnp.mean((y - ref) ** 2) / jnp.maximum(jnp.mean(ref**2), 1e-12)
        return total


def layerwise_objective(variables, config: ConfigLike, *, t, layers: Sequence[str] | None = None) -> Objective:
    """Sum over layers of each layer's relative output error on its own calibration inputs.

    For layer l with float inputs X_l (rows of `collect_layer_inputs`), a fresh
    chip computes Y_l = mvm(X_l); the loss is sum_l mean((Y_l - X_l W_l)^2) /
    mean((X_l W_l)^2). No backpropagation through the network: each layer's
    ranges only see their own error. Batches: {layer: (rows, in) inputs}
    (`layer_input_batches`); layers absent from a batch are skipped.
    """
    t = _static_time(t)
    all_layers = analog_layers(variables, config)
    names = tuple(all_layers) if layers is None else tuple(layers)
    unknown = sorted(set(names) - set(all_layers))
    if unknown:
        raise ValueError(f"layers not run in analog by this config: {unknown[:5]}")
    weights = {n: all_layers[n][0] for n in names}
    return Objective(_Layerwise(tuple((n, all_layers[n][1]) for n in names), t), weights)


def layer_input_batches(
    calibration: Mapping[str, np.ndarray], *, rows: int = 512, n_batches: int = 8, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Split per-layer calibration inputs into `n_batches` batches of `rows` rows per layer (seeded)."""
    rng = np.random.default_rng(seed)
    out = [{} for _ in range(n_batches)]
    for name, x in calibration.items():
        x = np.asarray(x, np.float32)
        for b in out:
            b[name] = x[rng.choice(len(x), min(rows, len(x)), replace=False)]
    return out
