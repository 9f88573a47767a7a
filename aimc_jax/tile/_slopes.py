"""The written derivative of PCM's device chain: d (read-out weight) / d w, one number per device.

`fresh_state`'s backward pass multiplies by it instead of differentiating the noise
chain (`_program._chip_weights`). The formulas are the derivatives of PCM's `Device`
functions (`_pcm`), written for `config.device == "pcm"` only; any other device takes the
forward-mode path (`_program._chip_weights_and_slope`, a `jvp` of its functions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aimc_jax.tile import _pcm
from aimc_jax.tile._chain import _crossbar_peak
from aimc_jax.tile._config import TileConfig
from aimc_jax.tile._layout import valid_mask
from aimc_jax.tile._rng import _device_prng, _normal


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
