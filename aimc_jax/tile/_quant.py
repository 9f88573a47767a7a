"""Straight-through quantisers for the DAC and the ADC.

A range r maps a value x to u = clip(x / r, -1, 1), which is rounded on a grid of
`res` steps over [-1, 1] and scaled back. Rounding the *normalised* value with a
straight-through estimator gives the range gradient from both clipping and
quantisation error (LSQ-style): d(r * q(u))/dr = q(u) - u inside, sign(u) outside.

`ibm_dac` is the same forward with IBM's input-range gradient instead (aihwkit's
input-range backward, aihwkit-lightning's `InputRangeForward`): the range learns only
from clipped inputs, one-sided and scaled by the range, plus a decay while enough
inputs are inside; the quantiser passes no gradient to it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["fake_quantize", "ibm_dac", "quantize_normalized", "ste_round"]


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


def _sum_to(a, shape):
    """Sum `a` over the axes it was broadcast along to come from `shape` (the vjp of broadcasting)."""
    lead = a.ndim - len(shape)
    a = jnp.sum(a, axis=tuple(range(lead))) if lead else a
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, a.shape, strict=True)) if n == 1 and m != 1)
    return jnp.sum(a, axis=axes, keepdims=True) if axes else a


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def ibm_dac(x, bound, count, res: int | None, decay: float, inside: float):
    """u_q = q(clip(x / bound, -1, 1)) (as `quantize_normalized`) with IBM's range gradient.

    Gradients (g: the cotangent of the clipped input x_c = bound * u, i.e. g_u / bound):
      x: g where |x| < bound or |x| == bound, 0 where clipped (straight-through clamp and rounding);
      bound: bound * (sum over x >= bound of min(g, 0) - sum over x <= -bound of max(g, 0))
        + decay * bound while the inside fraction 1 - (#clipped / count) exceeds `inside`.
    The first term only ever asks for a wider range (clipped inputs that want to be
    larger in magnitude); the decay pulls it in; quantisation error and everything
    downstream of u give the range nothing (use `stop_gradient(bound)` there).

    Args:
      x: inputs, broadcastable with `bound`.
      bound: positive ranges; its gradient is summed over the axes x broadcasts it along.
      count: number of real inputs behind each range (broadcastable to `bound`; excludes padding).
      res: DAC steps over [-1, 1] (0 or None: no rounding).
      decay: the decay factor (0: none); aihwkit's `InputRangeParameter.decay`.
      inside: `input_min_percentage`: the inside fraction above which the decay acts.
    """
    return quantize_normalized(x, bound, res)


def _ibm_dac_fwd(x, bound, count, res, decay, inside):
    return quantize_normalized(x, bound, res), (x, bound, count)


def _ibm_dac_bwd(res, decay, inside, residuals, g_u):
    x, bound, count = residuals
    g = g_u / bound  # cotangent of the clipped input bound * u
    upper, lower = x >= bound, x <= -bound
    through = ~(upper | lower) | (jnp.abs(x) == bound)
    g_x = _sum_to(jnp.where(through, g, 0.0), x.shape)
    pull = jnp.where(upper, jnp.minimum(g, 0.0), 0.0) - jnp.where(lower, jnp.maximum(g, 0.0), 0.0)
    g_bound = bound * _sum_to(pull, bound.shape)
    if decay:
        clipped = _sum_to(jnp.broadcast_to(upper | lower, g.shape).astype(jnp.float32), bound.shape)
        g_bound = g_bound + decay * bound * ((1.0 - clipped / count) > inside).astype(jnp.float32)
    return g_x, g_bound, jnp.zeros_like(count)


ibm_dac.defvjp(_ibm_dac_fwd, _ibm_dac_bwd)
