"""Hardware-aware (HWA) fine-tuning: the dense layer that injects hardware effects while training.

    hwa = HWAConfig(mode="full")                        # or "reduced"
    module = Encoder(config, dense=hwa_dense_factory(hwa, TileConfig()))
    variables = add_input_ranges(variables, tile_config, ranges)   # full mode: learnable DAC ranges

Full HWA (aihwkit-lightning style): per-channel Gaussian weight clipping after each
optimiser step (`clip_weights`), additive weight noise relative to the per-channel
max |W| (fresh per forward), the tile's DAC/ADC straight-through quantisation,
output noise and 512 x 512 tiling (the same `mvm` the inference simulator runs,
on noisy weights instead of PCM conductances), and learnable DAC input ranges
(initialised from data, pulled in by `range_decay` while > 95 % of inputs fall
inside). Reduced HWA: additive weight noise only, with no knowledge of the
resolutions, ranges or the PCM model. Noise is applied only when an 'hwa' rng is
given (training); without it the layer is the float `x @ W + b`.

References:
  Lammie et al., ISCAS 2024 (arXiv 2401.09859), Sec. II; Rasch et al., Hardware-aware
  training for large-scale and diverse deep learning inference workloads using
  in-memory computing-based accelerators, Nat. Commun. 14, 5282 (2023);
  aihwkit-lightning 2.1.0 (`TorchInferenceRPUConfig`, input-range learning).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from aimc_jax._logspace import log_space
from aimc_jax.tile import Ranges, TileConfig, TileState, tile_layout
from aimc_jax.tile._layout import to_blocks
from aimc_jax.tile._mvm import _mvm

__all__ = [
    "HWAConfig",
    "HWADense",
    "add_input_ranges",
    "clip_weights",
    "hwa_dense_factory",
    "log_space",
    "range_optimizer",
    "split_hwa_variables",
]

RANGE_PARAM = "input_range"
INIT_COLLECTION = "range_init"  # the train step's step index in, IBM-initialised ranges out
_INIT = nn.initializers.normal(0.02)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HWAConfig:
    """HWA training settings.

    Attributes:
      mode: "full" or "reduced" (weight noise only).
      weight_noise: std of the additive weight noise relative to the per-channel max |W|.
      clip_sigma: full mode: clip each output channel to +/- clip_sigma * std (None: no clipping).
      range_rule: full mode: how the DAC ranges learn.
        "ibm" (default): IBM's rule (aihwkit's input-range backward, aihwkit-lightning's
        `InputRangeForward`; `aimc_jax.tile._quant.ibm_dac`): a gradient only from clipped
        inputs, one-sided (it only widens) and scaled by the range, plus
        `range_decay * beta` while more than `range_inside` of the inputs are inside;
        the quantiser, output noise and ADC give the range none. The ranges are
        ordinary parameters of the network's own optimiser (AdamW, its learning
        rate), initialised in training: in each of the first `init_from_data` steps
        beta becomes the running mean of `init_std_alpha` * std of its input block
        (that batch's, before it is used), as lightning's `init_from_data`.
        "lsq": the earlier aimc_jax rule: the two-sided LSQ-style gradient through
        the DAC quantiser, output noise and ADC (`_quant` module), a separate Adam
        on log(beta) at `range_learning_rate` (`range_optimizer`), started from
        |mean| + 3 std of 512 calibration examples; a PT-like range optimisation
        during training, not the paper's baseline.
      range_decay: full mode: decay pulling a DAC range in while > `range_inside` of its inputs are inside.
      range_inside: the inside fraction above which the decay acts.
      init_from_data: "ibm": training steps over which the ranges are initialised from data.
      init_std_alpha: "ibm": the multiple of the input std the initialisation uses.
      range_learning_rate: "lsq": peak Adam learning rate of the DAC ranges, applied to log(beta)
        (`range_optimizer`: relative steps, cosine-decayed to a tenth over the run, as PT).
        An absolute rate of 1e-3 on beta (the first setting) could not lift the
        3-std starting ranges that clip MRPC's FFN inputs within one epoch: the
        weights collapsed to the majority class instead (see CHANGELOG.md).
    """

    mode: str = "full"
    weight_noise: float = 0.02
    clip_sigma: float | None = 2.5
    range_rule: str = "ibm"
    range_decay: float = 0.001
    range_inside: float = 0.95
    init_from_data: int = 100
    init_std_alpha: float = 3.0
    range_learning_rate: float = 0.05

    def settings(self) -> dict:
        """The settings this mode reads (reduced HWA: only the weight noise), e.g. for cache keys and reports.

        The "lsq" rule's settings are those of the runs before `range_rule` existed (same cache keys).
        """
        if self.mode != "full":
            return {"mode": self.mode, "weight_noise": self.weight_noise}
        s = dataclasses.asdict(self)
        if self.range_rule == "lsq":
            for k in ("range_rule", "init_from_data", "init_std_alpha"):
                del s[k]
        else:
            del s["range_learning_rate"]
        return s

    def __post_init__(self):
        if self.mode not in ("full", "reduced"):
            raise ValueError(f"HWAConfig.mode must be 'full' or 'reduced', got {self.mode!r}")
        if self.range_rule not in ("ibm", "lsq"):
            raise ValueError(f"HWAConfig.range_rule must be 'ibm' or 'lsq', got {self.range_rule!r}")
        if self.weight_noise < 0:
            raise ValueError(f"HWAConfig.weight_noise must be >= 0, got {self.weight_noise}")
        if self.clip_sigma is not None and not self.clip_sigma > 0:
            raise ValueError(f"HWAConfig.clip_sigma must be > 0 or None, got {self.clip_sigma}")
        if self.range_decay < 0 or not 0 < self.range_inside <= 1 or not self.range_learning_rate > 0:
            raise ValueError("HWAConfig: range_decay >= 0, 0 < range_inside <= 1, range_learning_rate > 0")
        if self.init_from_data < 0 or not self.init_std_alpha > 0:
            raise ValueError("HWAConfig: init_from_data >= 0, init_std_alpha > 0")


def _row_block(in_sizes) -> np.ndarray:
    return np.repeat(np.arange(len(in_sizes)), in_sizes)


class HWADense(nn.Module):
    """Dense layer with HWA noise injection (parameter names as `flax.linen.Dense`, plus `input_range`)."""

    features: int
    hwa: HWAConfig
    tile_config: TileConfig
    kernel_init: Callable = _INIT

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x = x.astype(jnp.float32)
        layout = tile_layout(x.shape[-1], self.features, self.tile_config)
        full = self.hwa.mode == "full"
        beta = self.param(RANGE_PARAM, nn.initializers.constant(3.0), (layout.n_in, layout.n_out)) if full else None
        if not self.has_rng("hwa"):
            y = x @ kernel
        elif not full:
            scale = jnp.max(jnp.abs(jax.lax.stop_gradient(kernel)), axis=0, keepdims=True)
            noise = jax.random.normal(self.make_rng("hwa"), kernel.shape, jnp.float32)
            y = x @ (kernel + self.hwa.weight_noise * scale * noise)
        else:
            rows = _row_block(layout.in_sizes)
            w_abs = jax.lax.stop_gradient(jnp.abs(kernel))
            gamma = jnp.stack([jnp.max(w_abs[rows == a], axis=0) for a in range(layout.n_in)])  # (n_in, out)
            gamma = jnp.where(gamma > 0, gamma, 1.0)
            k_w, k_out = jax.random.split(self.make_rng("hwa"))
            w_norm = kernel / gamma[rows]
            w_norm = w_norm + self.hwa.weight_noise * jax.random.normal(k_w, w_norm.shape, jnp.float32)
            state = TileState(weights=to_blocks(w_norm, layout), alpha=jnp.ones_like(beta), column=gamma, layout=layout)
            xs = x.reshape(-1, x.shape[-1])
            starts = np.cumsum((0, *layout.in_sizes))
            ibm = self.hwa.range_rule == "ibm"
            if ibm:
                beta = self._init_from_data(beta, xs, starts)
            rule = (self.hwa.range_decay, self.hwa.range_inside) if ibm else None
            y = _mvm(state, Ranges(column=gamma, input=beta), xs, self.tile_config, k_out, ibm_range=rule)
            y = y.reshape(*x.shape[:-1], self.features)
            if self.hwa.range_decay and not ibm:
                xa = jnp.abs(jax.lax.stop_gradient(xs))
                inside = jnp.stack(
                    [jnp.mean(xa[:, starts[a] : starts[a + 1], None] <= beta[a][None, None, :], axis=(0, 1))
                     for a in range(layout.n_in)]
                )  # fmt: skip
                pull = jax.lax.stop_gradient((inside > self.hwa.range_inside).astype(jnp.float32))
                self.sow("losses", "range_decay", self.hwa.range_decay * jnp.sum(beta * pull))
        return y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)

    def _init_from_data(self, beta, xs, starts):
        """IBM's data initialisation: while the train step's `range_init/step` < init_from_data,
        beta <- beta + (init_std_alpha * std(input block) - beta) / (step + 1), the running mean
        over the steps so far, used in this forward and written back (`range_init/beta`)."""
        if not self.has_variable(INIT_COLLECTION, "step"):
            return beta
        step = self.get_variable(INIT_COLLECTION, "step")
        std = jnp.stack([jnp.std(xs[:, starts[a] : starts[a + 1]], ddof=1) for a in range(len(starts) - 1)])
        target = self.hwa.init_std_alpha * jax.lax.stop_gradient(std)[:, None]
        mix = jnp.where((step < self.hwa.init_from_data) & (target > 0), 1.0 / (step + 1.0), 0.0)
        beta = beta + jax.lax.stop_gradient(mix * (target - beta))
        self.put_variable(INIT_COLLECTION, "beta", beta)
        return beta


def range_optimizer(hwa: HWAConfig, total_steps: int) -> optax.GradientTransformation:
    """The DAC ranges' optimiser in full HWA: Adam on log(beta), cosine decay from the peak rate to a tenth."""
    schedule = optax.cosine_decay_schedule(hwa.range_learning_rate, max(1, total_steps), alpha=0.1)
    return log_space(optax.adam(schedule))


def hwa_dense_factory(hwa: HWAConfig, tile_config: TileConfig, kernel_init=_INIT):
    """`Encoder(config, dense=...)` factory building every dense layer as an `HWADense`."""
    return functools.partial(HWADense, hwa=hwa, tile_config=tile_config, kernel_init=kernel_init)


def add_input_ranges(variables, ranges: Mapping[str, Ranges]) -> dict:
    """Variables with each layer's DAC range beta (from `ranges[name].input`) as a trainable `input_range` param."""
    flat = traverse_util.flatten_dict(variables["params"])
    for name, r in ranges.items():
        path = (*name.split("/"), "kernel")
        if path not in flat:
            raise ValueError(f"ranges name a layer the model does not have: {name}")
        flat[(*name.split("/"), RANGE_PARAM)] = jnp.asarray(r.input, jnp.float32)
    return {**variables, "params": traverse_util.unflatten_dict(flat)}


def split_hwa_variables(variables, tile_config: TileConfig) -> tuple[dict, dict[str, Ranges]]:
    """(plain variables without `input_range`, {layer: Ranges(column=abs-max of W, input=learned beta)})."""
    from aimc_jax.tile import init_ranges

    flat = traverse_util.flatten_dict(variables["params"])
    plain = {k: v for k, v in flat.items() if k[-1] != RANGE_PARAM}
    ranges = {}
    for k, beta in flat.items():
        if k[-1] == RANGE_PARAM:
            name = "/".join(k[:-1])
            gamma = init_ranges(plain[(*k[:-1], "kernel")], tile_config).column
            ranges[name] = Ranges(column=gamma, input=jnp.asarray(beta, jnp.float32))
    return {**variables, "params": traverse_util.unflatten_dict(plain)}, ranges


def clip_weights(params, sigma: float | None) -> Any:
    """Clip every dense kernel per output channel to +/- sigma * std of that channel (no-op for None)."""
    if sigma is None:
        return params
    flat = traverse_util.flatten_dict(params)
    for k, v in flat.items():
        if k[-1] == "kernel" and v.ndim == 2 and not any("embeddings" in p for p in k):
            bound = sigma * jnp.std(v, axis=0, keepdims=True)
            flat[k] = jnp.clip(v, -bound, bound)
    return traverse_util.unflatten_dict(flat)
