"""Programming, read-out and noisy matrix-vector multiply of one tiled analog layer.

    chip  = program(weight, ranges, config, key=k1)   # once per chip
    state = read(chip, t, config, key=k2)             # once per chip and drift time
    y     = mvm(state, ranges, x, config, key=k3)     # per batch (fresh output noise)

All three are pure, jit-able (config static), vmap-able over keys and
differentiable with respect to every `Ranges` leaf (REFERENCE §2 gives the model).
`config.noise_prng` chooses the generator of every draw (default: the counter-based
hash of `_rng`); `config.crossbar_kernel` how `mvm` runs the crossbars.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from aimc_jax import _pcm
from aimc_jax._checks import check_finite, check_times, guard, is_concrete, require_key
from aimc_jax._config import TileConfig
from aimc_jax._layout import TileLayout, merge_last, split_last, tile_layout, to_blocks, valid_mask
from aimc_jax._quant import fake_quantize, ibm_dac, quantize_normalized
from aimc_jax._ranges import Ranges, check_ranges
from aimc_jax._rng import hash_normal

__all__ = ["ProgrammedTile", "TileState", "fresh_state", "mvm", "program", "read"]

_meta = dict(metadata={"static": True})


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProgrammedTile:
    """A programmed layer: device conductances right after programming.

    Arrays have the block shape (n_in, n_out, block_in, block_out); padding
    devices (uneven splits) are zero.

    Attributes:
      g_plus: programmed conductance of the positive device of each differential pair, in uS.
      g_minus: programmed conductance of the negative device, in uS.
      nu_plus: drift exponent of the positive device, sampled once per device.
      nu_minus: drift exponent of the negative device, sampled once per device.
      reference: (n_in, n_out) drift-compensation reference, mean |g+ - g-| / g_max
        over each crossbar's devices (one-hot read-out right after programming).
      column: (n_in, out) the column ranges gamma the chip was programmed with.
      layout: the crossbar split (static).
    """

    g_plus: jax.Array
    g_minus: jax.Array
    nu_plus: jax.Array
    nu_minus: jax.Array
    reference: jax.Array
    column: jax.Array
    layout: TileLayout = dataclasses.field(**_meta)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TileState:
    """A layer read out at one inference time: what every MVM until the next read uses.

    Attributes:
      weights: (n_in, n_out, block_in, block_out) normalised conductances
        (g+ - g-) / g_max after drift and 1/f read noise.
      alpha: (n_in, n_out) global drift-compensation factor (1 when off).
      column: (n_in, out) the column ranges gamma the chip was programmed with.
      layout: the crossbar split (static).
    """

    weights: jax.Array
    alpha: jax.Array
    column: jax.Array
    layout: TileLayout = dataclasses.field(**_meta)


def _blocked_column(gamma, layout: TileLayout):
    """(n_in, out) -> (n_in, n_out, block_out); padding columns get 1.0."""
    return split_last(gamma, layout.out_sizes, fill=1.0)


def _crossbar_mean_abs(w, mask: np.ndarray):
    """Mean |w| over each crossbar's real devices: (n_in, n_out, bi, bo) -> (n_in, n_out)."""
    counts = mask.sum(axis=(2, 3))
    return jnp.sum(jnp.abs(w), axis=(2, 3)) / counts


def program(weight, ranges: Ranges, config: TileConfig, *, key) -> ProgrammedTile:
    """Program one layer's weights onto PCM crossbars.

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


def _program_devices(w, key, config: TileConfig, mask):
    """Normalised weights (block shape) -> ((g+, g-), (nu+, nu-)) of the programmed pairs."""
    g_max = config.g_max
    targets = (g_max * jnp.maximum(w, 0.0), g_max * jnp.maximum(-w, 0.0))
    k_prog, k_nu = jax.random.split(key)
    k_prog = jax.random.split(k_prog)
    k_nu = jax.random.split(k_nu)
    g_prog, nus = [], []
    for i, g_t in enumerate(targets):
        g = g_t
        if config.prog_noise_scale:
            noise = _normal(k_prog[i], g_t.shape, _device_prng(config))
            g = jnp.maximum(g_t + config.prog_noise_scale * _pcm.prog_sigma(g_t, g_max) * noise, 0.0)
        g_prog.append(jnp.where(mask, g, 0.0))
        if config.drift_scale:
            mu, sigma = _pcm.drift_nu_stats(g_t, g_max)
            nu = jnp.abs(mu + sigma * _normal(k_nu[i], g_t.shape, _device_prng(config))) * config.drift_scale
        else:
            nu = jnp.zeros_like(g_t)
        nus.append(jnp.where(mask, nu, 0.0))
    return tuple(g_prog), tuple(nus)


def _reference(g_prog, config: TileConfig, mask, key_program):
    """The drift-compensation reference per crossbar, right after programming (no read noise yet)."""
    weights = (g_prog[0] - g_prog[1]) / config.g_max
    return jax.lax.stop_gradient(_readout(weights, config, mask, jax.random.fold_in(key_program, _READOUT_STREAM)))


# the output-noise stream of the compensation read-outs: fold_in(programming or read key, this)
_READOUT_STREAM = 2
# the stream of `TileConfig.weight_noise`: fold_in(read key, this)
_WEIGHT_NOISE_STREAM = 3


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


def _read_devices(g_prog, nus, t, key, config: TileConfig, mask):
    """Programmed pairs -> normalised weights (g+ - g-) / g_max after drift and read noise at time t.

    With `programmed_conductances="rescaled"` the programmed net weights are first
    re-converted to one device per pair at the crossbar's own scale (aihwkit's order,
    the scale a constant for gradients); with "devices" each device keeps its own.
    """
    g_max = config.g_max
    keys = jax.random.split(key)
    peak = None
    if config.programmed_conductances == "rescaled":
        w_prog = (g_prog[0] - g_prog[1]) / g_max
        peak = jax.lax.stop_gradient(_crossbar_peak(w_prog))
        g_prog = (g_max * jnp.maximum(w_prog, 0.0) / peak, g_max * jnp.maximum(-w_prog, 0.0) / peak)
    finals = []
    for i, (g_p, nu) in enumerate(zip(g_prog, nus, strict=True)):
        g_t = g_p * _pcm.drift_factor(nu, t, config.t0) if config.drift_scale else g_p
        if config.read_noise_scale:
            sig = _pcm.read_noise_q(g_p, g_max) * _pcm.read_noise_time_factor(t, config.t0, config.t_read)
            noise = _normal(keys[i], g_p.shape, _device_prng(config))
            g_t = jnp.maximum(g_t + config.read_noise_scale * jnp.abs(g_t) * sig * noise, 0.0)
        finals.append(jnp.where(mask, g_t, 0.0))
    weights = (finals[0] - finals[1]) / g_max
    weights = weights if peak is None else weights * peak
    if config.weight_noise:  # the generic device's additive noise (slope 1: the written slopes hold)
        noise = _normal(jax.random.fold_in(key, _WEIGHT_NOISE_STREAM), weights.shape, _device_prng(config))
        weights = jnp.where(mask, weights + config.weight_noise * noise, 0.0)
    return weights


def _crossbar_peak(w_prog):
    """Each crossbar's largest |w_p| (aihwkit's conductance converter maps it to g_max), floored at 1e-7."""
    return jnp.maximum(jnp.max(jnp.abs(w_prog), axis=(2, 3), keepdims=True), 1e-7)


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
    on 2 CPU cores). What the PT objectives draw a fresh chip with.
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


def _normalised(blocks, gamma_blocks):
    """w = clip(W / gamma, -1, 1) in block shape: what `program` maps to conductances."""
    return jnp.clip(blocks / gamma_blocks[:, :, None, :], -1.0, 1.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _chip_weights(blocks, gamma_blocks, key_program, key_read, t, config, layout):
    """Weight blocks and blocked column ranges -> (read-out weights, compensation reference)."""
    mask = valid_mask(layout)
    g_prog, nus = _program_devices(_normalised(blocks, gamma_blocks), key_program, config, mask)
    return _read_devices(g_prog, nus, t, key_read, config, mask), _reference(g_prog, config, mask, key_program)


def _chip_weights_fwd(blocks, gamma_blocks, key_program, key_read, t, config, layout):
    w = _normalised(blocks, gamma_blocks)
    if _SLOPE == "written":
        out = _chip_weights(blocks, gamma_blocks, key_program, key_read, t, config, layout)
        written = _chip_slope if config.programmed_conductances == "devices" else _rescaled_slope
        slope = written(w, key_program, key_read, t, config, layout)
    else:
        out, slope = _chip_weights_and_slope(w, key_program, key_read, t, config, layout)
    return out, (slope, blocks, gamma_blocks)


# how the per-device slope is computed: "written" (`_chip_slope`, `_rescaled_slope`: one fused
# elementwise pass, measured cheaper) or "jvp" (forward-mode autodiff of the chain; the reference
# the written slopes are tested against)
_SLOPE = "written"


def _rescaled_slope(w, key_program, key_read, t, config: TileConfig, layout):
    """d (read-out weight) / d w per device for `programmed_conductances="rescaled"`, written out.

    Both programmed devices enter the net weight w_p = (g+_p - g-_p) / g_max, which is
    re-converted to g'+ = g_max max(w_p, 0) / peak and g'- = g_max max(-w_p, 0) / peak
    (peak, the crossbar's max |w_p|, a constant), drifted with each device's nu (drawn
    from its target) and read noisily with Q(g'); out = (final+ - final-) peak / g_max.
    The chain rule along that path, with autodiff's tie rules (0.5 for max at 0).
    """
    prng, g_max, shape = _device_prng(config), config.g_max, w.shape
    mask = valid_mask(layout)
    k_prog, k_nu = jax.random.split(key_program)
    k_prog, k_nu, k_read = jax.random.split(k_prog), jax.random.split(k_nu), jax.random.split(key_read)
    sides = ((jnp.maximum(w, 0.0), _relu_slope(w)), (jnp.maximum(-w, 0.0), -_relu_slope(-w)))
    g_p, dg_p, nus, dnus = [], [], [], []
    for i, (part, d_part) in enumerate(sides):
        g, dg = g_max * part, g_max * d_part  # target and d target / d w
        gp, dgp = g, dg
        if config.prog_noise_scale:
            gp, d_gp = _programmed_slope(g, _normal(k_prog[i], shape, prng), config)
            dgp = d_gp * dg
        g_p.append(jnp.where(mask, gp, 0.0))
        dg_p.append(dgp)
        if config.drift_scale:
            nu, d_nu = _nu_slope(g, _normal(k_nu[i], shape, prng), config)
            nus.append(nu)
            dnus.append(d_nu * dg)
    w_p = (g_p[0] - g_p[1]) / g_max
    dw_p = (dg_p[0] - dg_p[1]) / g_max
    peak = _crossbar_peak(w_p)
    rescaled = (
        (g_max * jnp.maximum(w_p, 0.0) / peak, g_max * _relu_slope(w_p) * dw_p / peak),
        (g_max * jnp.maximum(-w_p, 0.0) / peak, -g_max * _relu_slope(-w_p) * dw_p / peak),
    )
    log_t = jnp.log((t + config.t0) / config.t0)
    finals = []
    for i, (gq, dgq) in enumerate(rescaled):
        g_d, dg_d = gq, dgq
        if config.drift_scale:
            factor = jnp.exp(-nus[i] * log_t)
            g_d, dg_d = gq * factor, factor * (dgq - gq * log_t * dnus[i])
        if config.read_noise_scale:
            dg_d = _read_slope(g_d, dg_d, gq, dgq, _normal(k_read[i], shape, prng), t, config)
        finals.append(dg_d)
    return jnp.where(mask, (finals[0] - finals[1]) / g_max * peak, 0.0)


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


def _chip_slope(w, key_program, key_read, t, config: TileConfig, layout):
    """d (read-out weight) / d w per device, the derivative of `_chip_weights` written out.

    Only the device of the pair whose target is g_max |w| moves with w (the other's
    target is 0), so the slope is d g_final / d g of that device at g = g_max |w|, along
    programming (g_p = max(0, g + s sigma(g) n1)), the drift exponent
    (nu = |mu(g) + sigma_nu(g) n2|), drift (g_p d(nu)) and read noise
    (max(0, g_d (1 + r Q(g_p) T n3))); at w = 0 the mean of the two devices' slopes, and
    the max at 0 with autodiff's tie rule (0.5), as autodiff of `program`/`read` gives.
    The clip edges of mu and sigma_nu take one-sided derivatives (a set of measure zero).
    """
    prng = _device_prng(config)
    k_prog, k_nu = jax.random.split(key_program)
    keys = (jax.random.split(k_prog), jax.random.split(k_nu), jax.random.split(key_read))
    g = config.g_max * jnp.abs(w)
    plus, minus = (
        _device_slope(g, *(_normal(k[i], w.shape, prng) for k in keys), t, config) for i in (0, 1)
    )  # fmt: skip
    slope = jnp.where(w > 0.0, plus, jnp.where(w < 0.0, minus, 0.5 * (plus + minus)))
    return jnp.where(valid_mask(layout), slope, 0.0)


def _device_slope(g, n1, n2, n3, t, config: TileConfig):
    """d g_final / d g_target of one device with target g and its draws n1, n2, n3."""
    g_p, d_p = _programmed_slope(g, n1, config) if config.prog_noise_scale else (g, jnp.ones_like(g))
    g_d, d_d = g_p, d_p
    if config.drift_scale:
        nu, d_nu = _nu_slope(g, n2, config)
        log_t = jnp.log((t + config.t0) / config.t0)
        factor = jnp.exp(-nu * log_t)
        g_d = g_p * factor
        d_d = factor * (d_p - g_p * log_t * d_nu)
    if not config.read_noise_scale:
        return d_d
    return _read_slope(g_d, d_d, g_p, d_p, n3, t, config)


def _programmed_slope(g, n1, config: TileConfig):
    """(g_p, d g_p / d g): programming g_p = max(0, g + s sigma(g) n1) of a device with target g."""
    s = config.prog_noise_scale
    pre = g + s * _pcm.prog_sigma(g, config.g_max) * n1
    return jnp.maximum(pre, 0.0), _relu_slope(pre) * (1.0 + s * (1.9650 - 2.0 * 1.1731 * g / config.g_max) / 25.0 * n1)


def _nu_slope(g, n2, config: TileConfig):
    """(nu, d nu / d g): the drift exponent |mu(g) + sigma_nu(g) n2| * drift_scale of a device with target g.

    The clip edges of mu and sigma_nu take one-sided derivatives (a set of measure zero).
    """
    r = g / config.g_max
    log_g = jnp.log(jnp.maximum(r, _pcm._TINY))
    inv = jnp.where(r > _pcm._TINY, 1.0 / jnp.maximum(g, _pcm._TINY), 0.0)
    mu_raw, sg_raw = -0.0155 * log_g + 0.0244, -0.0125 * log_g - 0.0059
    d_mu = jnp.where((mu_raw > 0.049) & (mu_raw < 0.1), -0.0155 * inv, 0.0)
    d_sg = jnp.where((sg_raw > 0.008) & (sg_raw < 0.045), -0.0125 * inv, 0.0)
    z = jnp.clip(mu_raw, 0.049, 0.1) + jnp.clip(sg_raw, 0.008, 0.045) * n2
    return jnp.abs(z) * config.drift_scale, config.drift_scale * jnp.sign(z) * (d_mu + d_sg * n2)


def _read_slope(g_d, d_d, g_q, d_q, n3, t, config: TileConfig):
    """d g_final of max(0, g_d + s |g_d| Q(g_q) T n3), given d g_d and d g_q (the conductance Q reads)."""
    s = config.read_noise_scale * _pcm.read_noise_time_factor(t, config.t0, config.t_read)
    floor = 1e-3 ** (1 / 0.65)
    r_q = g_q / config.g_max
    q_raw = 0.0088 / jnp.maximum(r_q, floor) ** 0.65
    q = jnp.minimum(q_raw, 0.2)
    dq = jnp.where((r_q > floor) & (q_raw < 0.2), -0.65 * q / jnp.maximum(g_q, _pcm._TINY), 0.0) * d_q
    pre = g_d + s * g_d * q * n3
    return _relu_slope(pre) * (d_d + s * n3 * (d_d * q + g_d * dq))  # g_d >= 0: d|g_d| = d g_d


def _relu_slope(x):
    """d max(x, 0) / dx with autodiff's tie rule: 1 above 0, 0.5 at 0, 0 below."""
    return jnp.where(x > 0.0, 1.0, jnp.where(x == 0.0, 0.5, 0.0))


def _device_prng(config: TileConfig) -> str:
    """The generator of the per-chip draws (programming noise, drift exponents, read noise).

    The hash generator when `config.noise_prng` is "hash", else the key's own
    `jax.random.normal`: rbg-family bits are not vmap-invariant, and chips are
    programmed and read out vmapped over layers and keys.
    """
    return "hash" if config.noise_prng == "hash" else "jax"


def _normal(key, shape, prng: str):
    """Standard normal float32 draws: the hash generator, the key's own, or an rbg-family key seeded from it."""
    if prng == "hash":
        return hash_normal(key, shape)
    if prng != "jax":
        key = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl=prng)
    return jax.random.normal(key, shape, jnp.float32)


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
    beta = _unfused(ranges.input.astype(jnp.float32))
    out_bound = config.out_bound if ranges.output is None else ranges.output
    bound = None if out_bound is None else _unfused(jnp.broadcast_to(jnp.asarray(out_bound, jnp.float32), beta.shape))
    state = dataclasses.replace(state, column=_unfused(state.column.astype(jnp.float32)), alpha=_unfused(state.alpha))
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
    reduction is not fused into an elementwise consumer, so each slice is taken once
    into a small buffer (tests/test_scan_codegen.py reads the compiled HLO).
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
