"""Straight-through quantisers for the DAC and the ADC.

A range r maps a value x to u = clip(x / r, -1, 1), which is rounded on a grid of
`res` steps over [-1, 1] and scaled back. Rounding the *normalised* value with a
straight-through estimator gives the range gradient from both clipping and
quantisation error (LSQ-style): d(r * q(u))/dr = q(u) - u inside, sign(u) outside.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["fake_quantize", "quantize_normalized", "ste_round"]


def ste_round(u, res: int | None):
    """Round u (normally in [-1, 1]) to the grid k * 2 / res; identity gradient.

    The forward value is exactly the grid point: `u - stop_gradient(u)` is exactly 0.
    """
    if not res:
        return u
    half = res / 2
    q = jax.lax.stop_gradient(jnp.round(u * half) / half)
    return u - jax.lax.stop_gradient(u) + q


def quantize_normalized(x, bound, res: int | None, *, clip: bool = True):
    """u_q = q(clip(x / bound, -1, 1)): the normalised, quantised value (no scale-back).

    With `clip=False` the value is not clipped (an unbounded converter; the grid
    k * 2 / res, if any, extends without limit).
    """
    u = x / bound
    if clip:
        u = jnp.clip(u, -1.0, 1.0)
    return ste_round(u, res)


def fake_quantize(x, bound, res: int | None):
    """bound * q(clip(x / bound, -1, 1)) with the straight-through surrogate gradient.

    Args:
      x: values, any shape.
      bound: positive range, broadcastable to x.
      res: steps over [-1, 1] (0 or None: clip only).

    Returns:
      Quantised values on the grid bound * k * 2 / res, k integer, |k| <= res / 2.
    """
    return bound * quantize_normalized(x, bound, res)
