"""The device chain of one layer, elementwise per device: targets -> programmed pairs -> read-out weights.

`_program_devices` maps normalised weights to the programmed conductances and drift
exponents of each differential pair, `_read_devices` drifts and reads them out at t.
The physics of one device is the `Device` that `config.device` names (`_device`; PCM by
default); the draws are the tile's (`_rng._normal`, on fixed key streams).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aimc_jax.tile._config import TileConfig
from aimc_jax.tile._device import device_of
from aimc_jax.tile._rng import _device_prng, _normal

# the stream of `TileConfig.weight_noise`: fold_in(read key, this)
_WEIGHT_NOISE_STREAM = 3


def _program_devices(w, key, config: TileConfig, mask):
    """Normalised weights (block shape) -> ((g+, g-), (nu+, nu-)) of the programmed pairs."""
    g_max = config.g_max
    device = device_of(config)
    targets = (g_max * jnp.maximum(w, 0.0), g_max * jnp.maximum(-w, 0.0))
    k_prog, k_nu = jax.random.split(key)
    k_prog = jax.random.split(k_prog)
    k_nu = jax.random.split(k_nu)
    g_prog, nus = [], []
    for i, g_t in enumerate(targets):
        g = g_t
        if config.prog_noise_scale:
            g = device.programmed(g_t, _normal(k_prog[i], g_t.shape, _device_prng(config)), config)
        g_prog.append(jnp.where(mask, g, 0.0))
        if config.drift_scale:
            nu = device.drift_exponent(g_t, _normal(k_nu[i], g_t.shape, _device_prng(config)), config)
        else:
            nu = jnp.zeros_like(g_t)
        nus.append(jnp.where(mask, nu, 0.0))
    return tuple(g_prog), tuple(nus)


def _read_devices(g_prog, nus, t, key, config: TileConfig, mask):
    """Programmed pairs -> normalised weights (g+ - g-) / g_max after drift and read noise at time t.

    With `programmed_conductances="rescaled"` the programmed net weights are first
    re-converted to one device per pair at the crossbar's own scale (aihwkit's order,
    the scale a constant for gradients); with "devices" each device keeps its own.
    """
    g_max = config.g_max
    device = device_of(config)
    keys = jax.random.split(key)
    peak = None
    if config.programmed_conductances == "rescaled":
        w_prog = (g_prog[0] - g_prog[1]) / g_max
        peak = jax.lax.stop_gradient(_crossbar_peak(w_prog))
        g_prog = (g_max * jnp.maximum(w_prog, 0.0) / peak, g_max * jnp.maximum(-w_prog, 0.0) / peak)
    finals = []
    for i, (g_p, nu) in enumerate(zip(g_prog, nus, strict=True)):
        g_t = device.drifted(g_p, nu, t, config) if config.drift_scale else g_p
        if config.read_noise_scale:
            g_t = device.read(g_t, g_p, _normal(keys[i], g_p.shape, _device_prng(config)), t, config)
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


def _normalised(blocks, gamma_blocks):
    """w = clip(W / gamma, -1, 1) in block shape: what `program` maps to conductances."""
    return jnp.clip(blocks / gamma_blocks[:, :, None, :], -1.0, 1.0)
