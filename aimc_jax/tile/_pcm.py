"""The PCM device statistics of aihwkit's `PCMLikeNoiseModel` (REFERENCE §2).

Pure formulas; conductances in micro-Siemens. `programmed`, `drift_exponent`, `drifted`
and `read` are the functions of the `Device` `_device.PCM`, the others their statistics.
All are safe to differentiate at g = 0 (every power and logarithm sees a clamped argument).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = [
    "drift_exponent",
    "drift_factor",
    "drift_nu_stats",
    "drifted",
    "prog_sigma",
    "programmed",
    "read",
    "read_noise_q",
    "read_noise_time_factor",
]

_TINY = 1e-12


def prog_sigma(g_target, g_max: float):
    """Programming-noise std (uS) for a target conductance (uS)."""
    r = g_target / g_max
    return (0.26348 + 1.9650 * r - 1.1731 * r * r) * (g_max / 25.0)


def drift_nu_stats(g_target, g_max: float):
    """Mean and std of the drift exponent nu for a target conductance (uS)."""
    log_g = jnp.log(jnp.maximum(jnp.abs(g_target) / g_max, _TINY))
    mu = jnp.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
    sigma = jnp.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
    return mu, sigma


def drift_factor(nu, t, t0: float):
    """((t + t0) / t0) ** (-nu)."""
    return jnp.exp(-nu * jnp.log((t + t0) / t0))


def read_noise_q(g_prog, g_max: float):
    """Q_s = min(0.0088 / max((|g_prog| / g_max) ** 0.65, 1e-3), 0.2)."""
    floor = 1e-3 ** (1 / 0.65)  # clamp before the power: no inf gradient at 0
    r = jnp.maximum(jnp.abs(g_prog) / g_max, floor)
    return jnp.minimum(0.0088 / r**0.65, 0.2)


def read_noise_time_factor(t, t0: float, t_read: float):
    """sqrt(ln((t + t0 + t_read) / (2 t_read)))."""
    return jnp.sqrt(jnp.log((t + t0 + t_read) / (2.0 * t_read)))


# The `Device` functions (`_device.PCM`): n are standard-normal draws, config a `TileConfig`.


def programmed(g_target, n, config):
    """max(0, g + s sigma(g) n): the programmed conductance, s = `config.prog_noise_scale`."""
    return jnp.maximum(g_target + config.prog_noise_scale * prog_sigma(g_target, config.g_max) * n, 0.0)


def drift_exponent(g_target, n, config):
    """|mu(g) + sigma_nu(g) n| * `config.drift_scale`: the drift exponent drawn for a target conductance."""
    mu, sigma = drift_nu_stats(g_target, config.g_max)
    return jnp.abs(mu + sigma * n) * config.drift_scale


def drifted(g_prog, nu, t, config):
    """g_p ((t + t0) / t0) ** (-nu): the drifted conductance at t seconds."""
    return g_prog * drift_factor(nu, t, config.t0)


def read(g, g_prog, n, t, config):
    """max(0, g + r |g| Q_s(g_p) T(t) n): one read-out with 1/f read noise, r = `config.read_noise_scale`."""
    sig = read_noise_q(g_prog, config.g_max) * read_noise_time_factor(t, config.t0, config.t_read)
    return jnp.maximum(g + config.read_noise_scale * jnp.abs(g) * sig * n, 0.0)
