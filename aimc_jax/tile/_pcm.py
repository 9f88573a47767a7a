"""The PCM device statistics of aihwkit's `PCMLikeNoiseModel` (REFERENCE §2).

Pure formulas; conductances in micro-Siemens. All are safe to differentiate at
g = 0 (every power and logarithm sees a clamped argument).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["drift_factor", "drift_nu_stats", "prog_sigma", "read_noise_q", "read_noise_time_factor"]

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
