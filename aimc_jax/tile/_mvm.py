"""The noisy analog matrix-vector multiply of a read-out layer and its two crossbar kernels.

    y = mvm(state, ranges, x, config, key=k)   # per batch (fresh output noise)

DAC, analog product, output noise, ADC and digital back-scaling per crossbar;
`config.crossbar_kernel` picks how the crossbars run ("unrolled" on CPU, "batched" elsewhere).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from aimc_jax._checks import check_finite, is_concrete, require_key
from aimc_jax.tile._config import TileConfig
from aimc_jax.tile._layout import TileLayout, merge_last, split_last
from aimc_jax.tile._quant import fake_quantize, ibm_dac, quantize_normalized
from aimc_jax.tile._ranges import Ranges, check_ranges
from aimc_jax.tile._rng import _normal
from aimc_jax.tile._state import TileState, _blocked_column

__all__ = ["mvm"]


def mvm(state: TileState, ranges: Ranges, x, config: TileConfig, *, key):
    """Noisy analog matrix-vector multiply of a read-out layer, `x @ W` in hardware.

    Per crossbar (a, b): DAC u = q(clip(x_a / beta[a, b], -1, 1)) (no clip if
    `config.inp_clip` is False); analog product
    with the read-out conductances; output noise (fresh per call); ADC clip and
    quantisation; then digital back-scaling by beta * gamma * alpha and the sum
    over input blocks.

    Args:
      state: from `read`. Its column ranges (the ones the chip was programmed with)
        are used for back-scaling; `ranges.column` must equal them.
      ranges: DAC ranges `input` (and optional ADC bounds `output`) are taken from here.
      x: (..., in_features) inputs.
      config: `TileConfig` (static under jit).
      key: PRNG key for the output noise.

    Returns:
      (..., out_features) outputs in the units of x @ W (no bias).

    References:
      REFERENCE §2 (order of operations); aihwkit 1.2.0 `InferenceRPUConfig` forward.
    """
    require_key(key, "mvm()")
    if not isinstance(state, TileState):
        raise TypeError(f"mvm: expected a TileState from read(), got {type(state).__name__}")
    layout = state.layout
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != layout.in_features:
        raise ValueError(f"mvm: x has shape {x.shape}, its last axis must be the layer's {layout.in_features} inputs")
    check_finite(x, "mvm: x")
    check_ranges(ranges, layout, "mvm")
    _check_same_column(ranges.column, state.column)
    out_bound = config.out_bound if ranges.output is None else ranges.output
    if config.out_res and out_bound is None:
        raise ValueError("mvm: out_res needs an ADC bound (config.out_bound or ranges.output)")
    return _mvm(state, ranges, x, config, key)


def resolve_crossbar_kernel(config: TileConfig) -> str:
    """The `mvm` kernel `config.crossbar_kernel` resolves to at trace time: "unrolled" or "batched"."""
    if config.crossbar_kernel != "auto":
        return config.crossbar_kernel
    return "unrolled" if jax.default_backend() == "cpu" else "batched"


@functools.partial(jax.jit, static_argnames=("config", "ibm_range"))
def _mvm(state, ranges, x, config, key, ibm_range=None):
    """The crossbar kernels' common entry.

    `ibm_range=(decay, inside)` (static; HWA training) gives beta IBM's input-range
    gradient (`ibm_dac`) and nothing else: every other use of beta (back-scaling) is
    stop-gradient. None: autodiff through the DAC (LSQ-style, PT).
    """
    layout = state.layout
    batch_shape = x.shape[:-1]
    x = x.reshape(-1, layout.in_features).astype(jnp.float32)
    beta = ranges.input.astype(jnp.float32)
    out_bound = config.out_bound if ranges.output is None else ranges.output
    bound = None if out_bound is None else jnp.broadcast_to(jnp.asarray(out_bound, jnp.float32), beta.shape)
    state = dataclasses.replace(state, column=_unfused(state.column.astype(jnp.float32)))
    if ibm_range is None:
        dac = functools.partial(_plain_dac, res=config.inp_res, clip=config.inp_clip)
        scale_beta = beta
    else:  # the DAC's kernel argument: dac(x_block, beta, count of real inputs) -> u
        dac = functools.partial(ibm_dac, res=config.inp_res, decay=ibm_range[0], inside=ibm_range[1])
        scale_beta = jax.lax.stop_gradient(beta)
    kernel = _mvm_batched if resolve_crossbar_kernel(config) == "batched" else _mvm_unrolled
    out = kernel(state, x, beta, scale_beta, bound, config, key, dac)
    return out.reshape(*batch_shape, layout.out_features)


def _unfused(v):
    """v itself (v + 0, exactly), computed as a reduction so that XLA does not fuse it into its consumers.

    Inside a scanned encoder a layer's ranges and compensation factors are dynamic
    slices of the stacked layers; fused into the per-crossbar noise/ADC/back-scaling
    loop, the slice of the column ranges made that loop ~4x slower on XLA:CPU (jax 0.10;
    roberta-base's analog forward ran ~2.8x the float one scanned, 1.4x unrolled). A
    reduction is not fused into an elementwise consumer, so that slice is taken once into
    a small buffer (tests/test_scan_codegen.py reads the compiled HLO). Only the column
    ranges: the per-crossbar scalars (beta, alpha, the ADC bound) cost nothing fused, and
    taking them out too changed XLA's float contraction of the back-scaling, so that rare
    near-tie ADC codes flipped; with the column ranges alone every output is bit-identical
    to the fused program (checked on MiniLM's analog forward).
    """
    return jnp.sum(jnp.stack([v, jnp.zeros_like(v)]), axis=0)


def _plain_dac(x, beta, count, *, res, clip):
    del count
    return quantize_normalized(x, beta, res, clip=clip)


def _noise_key(key, a: int, b: int, layout: TileLayout):
    """The output-noise key of crossbar (a, b): independent per crossbar, the same in both kernels."""
    return jax.random.fold_in(key, a * layout.n_out + b)


def _mvm_unrolled(state, x, beta, scale_beta, bound, config, key, dac):
    """(N, in) -> (N, out): one small dot per crossbar, unrolled (static).

    Every intermediate stays in token-major order, so the noise/ADC/back-scaling
    work fuses into one vectorised loop per crossbar and the output needs no
    transpose (measured 2-3x faster on XLA:CPU than `_mvm_batched`).
    """
    layout = state.layout
    gamma = state.column.astype(jnp.float32)
    in_starts = np.cumsum((0, *layout.in_sizes))
    out_starts = np.cumsum((0, *layout.out_sizes))
    columns = []
    for b, size_out in enumerate(layout.out_sizes):
        acc = None
        for a, size_in in enumerate(layout.in_sizes):
            xa = x[:, in_starts[a] : in_starts[a + 1]]
            u = dac(xa, beta[a, b], jnp.float32(xa.size))
            y = u @ state.weights[a, b, :size_in, :size_out]  # (N, size_out) normalised
            if config.out_noise:  # fresh per call, independent per crossbar
                y = y + config.out_noise * _normal(_noise_key(key, a, b, layout), y.shape, config.noise_prng)
            if bound is not None:
                y = fake_quantize(y, bound[a, b], config.out_res)
            scale = scale_beta[a, b] * gamma[a, out_starts[b] : out_starts[b + 1]] * state.alpha[a, b]
            y = y * scale[None, :]
            acc = y if acc is None else acc + y
        columns.append(acc)
    return columns[0] if len(columns) == 1 else jnp.concatenate(columns, axis=-1)


def _stacked_noise(key, n: int, layout: TileLayout, prng: str):
    """(n_in, n_out, n, block_out): the unrolled kernel's (n, size_out) draw of each crossbar, zero-padded."""
    rows = []
    for a in range(layout.n_in):
        row = []
        for b, size in enumerate(layout.out_sizes):
            z = _normal(_noise_key(key, a, b, layout), (n, size), prng)
            row.append(jnp.pad(z, ((0, 0), (0, layout.block_out - size))))
        rows.append(jnp.stack(row))
    return jnp.stack(rows)


def _mvm_batched(state, x, beta, scale_beta, bound, config, key, dac):
    """(N, in) -> (N, out): one batched dot over all crossbars, for GPU/TPU.

    Crossbar-major order (n_in, n_out, N, block): the crossbars are the leading batch
    dimensions of the dot, so its output needs no transpose and the per-crossbar noise
    draws stack without one. Padding rows of x and of the weights are zero; padding
    columns are computed and dropped at the end.
    """
    layout = state.layout
    n = x.shape[0]
    xb = jnp.moveaxis(split_last(x, layout.in_sizes), 1, 0)  # (n_in, N, bi), zero-padded
    count = jnp.asarray(np.asarray(layout.in_sizes, np.float32) * n)[:, None, None, None]
    u = dac(xb[:, None], beta[:, :, None, None], count)
    y = jnp.einsum("abni,abio->abno", u, state.weights)  # (n_in, n_out, N, bo) normalised
    if config.out_noise:  # fresh per call, independent per crossbar
        y = y + config.out_noise * _stacked_noise(key, n, layout, config.noise_prng)
    if bound is not None:
        y = fake_quantize(y, bound[:, :, None, None], config.out_res)
    gamma = _blocked_column(state.column.astype(jnp.float32), layout)  # (n_in, n_out, bo)
    scale = scale_beta[:, :, None] * gamma * state.alpha[:, :, None]
    y = jnp.sum(y * scale[:, :, None, :], axis=0)  # (n_out, N, bo)
    return merge_last(jnp.moveaxis(y, 0, 1), layout.out_sizes)


def _check_same_column(given, programmed) -> None:
    if given is programmed or not (is_concrete(given) and is_concrete(programmed)):
        return
    if not np.array_equal(np.asarray(given), np.asarray(programmed)):
        raise ValueError(
            "mvm: ranges.column differs from the column ranges the chip was programmed with; "
            "re-program the layer (program(weight, ranges, ...)) after changing gamma"
        )
