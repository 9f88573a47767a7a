"""Programming and read-out of one tiled analog layer, and the fresh chip of the PT objectives.

    chip  = program(weight, ranges, config, key=k1)   # once per chip
    state = read(chip, t, config, key=k2)             # once per chip and drift time
    state = fresh_state(weight, ranges, t, config, key_program=k1, key_read=k2)  # both, cheaper gradient

All are pure, jit-able (config static), vmap-able over keys and differentiable with
respect to every `Ranges` leaf (REFERENCE §2 gives the model). The per-device chain is in
`_chain` (the physics of `config.device`), its written derivative for PCM in `_slopes`; the
generator of every draw is `config.noise_prng`'s (default: the counter-based hash of `_rng`).
Drift compensation's read-outs live here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aimc_jax._checks import check_finite, check_times, guard, is_concrete, require_key
from aimc_jax.tile._chain import _normalised, _program_devices, _read_devices
from aimc_jax.tile._config import TileConfig
from aimc_jax.tile._layout import tile_layout, to_blocks, valid_mask
from aimc_jax.tile._quant import fake_quantize
from aimc_jax.tile._ranges import Ranges, check_ranges
from aimc_jax.tile._rng import _normal
from aimc_jax.tile._slopes import _chip_slope, _rescaled_slope
from aimc_jax.tile._state import ProgrammedTile, TileState, _blocked_column, _crossbar_mean_abs

__all__ = ["fresh_state", "program", "read"]


def program(weight, ranges: Ranges, config: TileConfig, *, key) -> ProgrammedTile:
    """Program one layer's weights onto crossbars of `config.device` (PCM by default).

    Args:
      weight: (in_features, out_features) kernel (Flax layout).
      ranges: the layer's `Ranges`; `ranges.column` sets the weight-to-conductance map.
      config: `TileConfig` (static under jit).
      key: PRNG key for programming noise and drift exponents (drawn with the
        generator `config.noise_prng` selects).

    Returns:
      A `ProgrammedTile` carrying the column ranges it was programmed with.

    References:
      aihwkit 1.2.0 `PCMLikeNoiseModel.apply_programming_noise_to_conductance`,
      `generate_drift_coefficients`; REFERENCE §2.
    """
    require_key(key, "program()")
    return _program(_checked_weight(weight, ranges, config, "program"), ranges, config, key)


def _checked_weight(weight, ranges: Ranges, config: TileConfig, where: str):
    """The weight as an array, after the eager checks of its shape, values and ranges."""
    weight = jnp.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"{where}: weight must be 2-D (in, out), got shape {weight.shape}")
    check_ranges(ranges, tile_layout(*weight.shape, config), where)
    check_finite(weight, f"{where}: weight")
    return weight


def _check_time(t, where: str) -> None:
    if np.ndim(t) != 0:
        raise ValueError(f"{where}: t must be a scalar time in seconds, got shape {np.shape(t)} (one read-out per t)")
    if not is_concrete(t):
        guard(jnp.isfinite(t) & (t >= 0), f"{where}: drift time(s) t must be finite and >= 0 seconds, got {{t}}", t=t)
    else:
        check_times(t, where)


@functools.partial(jax.jit, static_argnames="config")
def _program(weight, ranges, config, key):
    layout = tile_layout(*weight.shape, config)
    mask = valid_mask(layout)
    w = to_blocks(weight.astype(jnp.float32), layout)
    gamma = ranges.column.astype(jnp.float32)
    w = jnp.clip(w / _blocked_column(gamma, layout)[:, :, None, :], -1.0, 1.0)
    g_prog, nus = _program_devices(w, key, config, mask)
    reference = _reference(g_prog, config, mask, key)
    return ProgrammedTile(g_prog[0], g_prog[1], nus[0], nus[1], reference, gamma, layout)


def read(programmed: ProgrammedTile, t, config: TileConfig, *, key) -> TileState:
    """Read a programmed layer out at inference time `t` (seconds since programming).

    Drift, then 1/f read noise sampled once for this read-out (aihwkit semantics:
    the conductances are then fixed for every MVM until the next read-out), then
    the global drift-compensation factor per crossbar (under stop_gradient).

    Args:
      programmed: from `program`.
      t: inference time in seconds (>= 0), a Python or traced scalar.
      config: `TileConfig` (static under jit).
      key: PRNG key for the read noise (drawn with the generator `config.noise_prng` selects).

    Returns:
      A `TileState`.

    References:
      aihwkit 1.2.0 `PCMLikeNoiseModel.apply_drift_noise_to_conductance`,
      `GlobalDriftCompensation`; REFERENCE §2.
    """
    require_key(key, "read()")
    if not isinstance(programmed, ProgrammedTile):
        raise TypeError(f"read: expected a ProgrammedTile from program(), got {type(programmed).__name__}")
    _check_time(t, "read")
    return _read(programmed, t, config, key)


@functools.partial(jax.jit, static_argnames="config")
def _read(programmed, t, config, key):
    layout = programmed.layout
    mask = valid_mask(layout)
    pairs = (programmed.g_plus, programmed.g_minus), (programmed.nu_plus, programmed.nu_minus)
    weights = _read_devices(*pairs, jnp.asarray(t, jnp.float32), key, config, mask)
    alpha = _compensation(programmed.reference, weights, config, mask, key)
    return TileState(weights, alpha, programmed.column, layout)


def _reference(g_prog, config: TileConfig, mask, key_program):
    """The drift-compensation reference per crossbar, right after programming (no read noise yet)."""
    weights = (g_prog[0] - g_prog[1]) / config.g_max
    return jax.lax.stop_gradient(_readout(weights, config, mask, jax.random.fold_in(key_program, _READOUT_STREAM)))


# the output-noise stream of the compensation read-outs: fold_in(programming or read key, this)
_READOUT_STREAM = 2


def _readout(weights, config: TileConfig, mask, key):
    """Global drift compensation's read-out of each crossbar: (n_in, n_out) mean |y| over its outputs.

    "forward": the identity through the tile (one-hot inputs at full scale pass the
    DAC exactly, y = the crossbar's rows, plus output noise, then the ADC), as
    aihwkit's `GlobalDriftCompensation` reads a tile; "exact": mean |w|.
    """
    if config.drift_readout == "forward":
        if config.out_noise:
            weights = weights + config.out_noise * _normal(key, weights.shape, config.noise_prng)
        if config.out_bound is not None:
            weights = fake_quantize(weights, jnp.float32(config.out_bound), config.out_res)
        weights = jnp.where(mask, weights, 0.0)
    return _crossbar_mean_abs(weights, mask)


def _compensation(reference, weights, config: TileConfig, mask, key_read):
    """Global drift compensation per crossbar: reference / read-out at t (1 when off), no gradient."""
    if not config.drift_compensation:
        return jnp.ones(reference.shape, jnp.float32)
    current = _readout(jax.lax.stop_gradient(weights), config, mask, jax.random.fold_in(key_read, _READOUT_STREAM))
    if config.drift_readout == "forward":  # aihwkit clamps both read-outs at 1e-4
        reference, current = jnp.maximum(reference, 1e-4), jnp.maximum(current, 1e-4)
    return jax.lax.stop_gradient(reference / jnp.maximum(current, 1e-12))


def fresh_state(weight, ranges: Ranges, t, config: TileConfig, *, key_program, key_read) -> TileState:
    """`read(program(weight, ranges, config, key=key_program), t, config, key=key_read)` in one step.

    The same draws and values up to float32 rounding (the fused program contracts some
    multiply-adds differently), with a cheaper gradient: every read-out weight depends
    only on its own normalised weight w = clip(W / gamma, -1, 1), so its derivative is
    one number per device, written out (`_chip_slope` for "devices", `_rescaled_slope` for
    "rescaled"; tested equal to a `jvp` of the chain) and applied in the backward pass
    instead of differentiating the noise chain (MiniLM PT step at 16 x 32: 3.5 s -> 1.2 s
    on 2 CPU cores) for PCM; for another `config.device` the slope comes from a `jvp` of
    its `Device` functions. What the PT objectives draw a fresh chip with.
    """
    require_key(key_program, "fresh_state()")
    require_key(key_read, "fresh_state()")
    weight = _checked_weight(weight, ranges, config, "fresh_state")
    _check_time(t, "fresh_state")
    return _fresh_state(weight, ranges, t, config, key_program, key_read)


@functools.partial(jax.jit, static_argnames="config")
def _fresh_state(weight, ranges, t, config, key_program, key_read):
    layout = tile_layout(*weight.shape, config)
    gamma = ranges.column.astype(jnp.float32)
    t = jax.lax.stop_gradient(jnp.asarray(t, jnp.float32))
    weights, reference = _chip_weights(
        to_blocks(weight.astype(jnp.float32), layout), _blocked_column(gamma, layout), key_program, key_read, t,
        config, layout,
    )  # fmt: skip
    alpha = _compensation(reference, weights, config, valid_mask(layout), key_read)
    return TileState(weights, alpha, gamma, layout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _chip_weights(blocks, gamma_blocks, key_program, key_read, t, config, layout):
    """Weight blocks and blocked column ranges -> (read-out weights, compensation reference)."""
    mask = valid_mask(layout)
    g_prog, nus = _program_devices(_normalised(blocks, gamma_blocks), key_program, config, mask)
    return _read_devices(g_prog, nus, t, key_read, config, mask), _reference(g_prog, config, mask, key_program)


def _chip_weights_fwd(blocks, gamma_blocks, key_program, key_read, t, config, layout):
    w = _normalised(blocks, gamma_blocks)
    if _SLOPE == "written" and config.device == "pcm":  # the written slopes are PCM's formulas
        out = _chip_weights(blocks, gamma_blocks, key_program, key_read, t, config, layout)
        written = _chip_slope if config.programmed_conductances == "devices" else _rescaled_slope
        slope = written(w, key_program, key_read, t, config, layout)
    else:
        out, slope = _chip_weights_and_slope(w, key_program, key_read, t, config, layout)
    return out, (slope, blocks, gamma_blocks)


# how the per-device slope is computed: "written" (`_chip_slope`, `_rescaled_slope`: one fused
# elementwise pass, measured cheaper) or "jvp" (forward-mode autodiff of the chain; the reference
# the written slopes are tested against, and the only one for a device other than PCM)
_SLOPE = "written"


def _chip_weights_and_slope(w, key_program, key_read, t, config: TileConfig, layout):
    """((read-out weights, reference), d weight / d w per device) by forward-mode autodiff.

    Every read-out weight depends on its own w only (the rescale factor of
    "rescaled" is a constant for gradients), so one `jvp` with tangent 1 through the
    elementwise device chain gives the whole derivative, with autodiff's own rules.
    """
    mask = valid_mask(layout)
    (g_prog, nus), tangents = jax.jvp(
        lambda v: _program_devices(v, key_program, config, mask), (w,), (jnp.ones_like(w),)
    )
    weights, slope = jax.jvp(lambda g, n: _read_devices(g, n, t, key_read, config, mask), (g_prog, nus), tangents)
    return (weights, _reference(g_prog, config, mask, key_program)), jnp.where(mask, slope, 0.0)


def _chip_weights_bwd(config, layout, residuals, cotangents):
    # d w / d gamma = -W / gamma^2 and d w / d W = 1 / gamma inside the clip, 0 outside. The
    # reduction over rows sums a `where`: XLA:CPU rewrites a plain sum(a * b, axis) into a dot
    # fusion that ran ~30x slower on these shapes, and an einsum into weight-sized transposes.
    slope, blocks, gamma_blocks = residuals
    gamma = gamma_blocks[:, :, None, :]
    inside = jnp.abs(blocks) < jnp.abs(gamma)
    ct = jnp.where(inside, cotangents[0] * slope, 0.0)
    ct_gamma = -jnp.sum(jnp.where(inside, ct * blocks, 0.0), axis=2) / (gamma_blocks * gamma_blocks)
    return ct / gamma, ct_gamma, None, None, None


_chip_weights.defvjp(_chip_weights_fwd, _chip_weights_bwd)
