"""Positive ranges optimised on a log scale: the one transform PT and HWA training share.

    tx = log_space(optax.adam(0.05))                 # an optax transformation on the ranges p themselves
    u, state = log_step(inner, grads, state, p)      # its core: inner's update of log p (PT adds it to theta)

A range p = exp(theta) is optimised through theta: the gradient is mapped by the chain
rule (dL/dtheta = p dL/dp) and the inner optimiser's step u is taken on theta, so e.g.
Adam's steps are relative (a rate of 0.05 moves a range by ~5 %) and a range never reaches
zero or changes sign. PT (`aimc_jax.pt.optimize_ranges`) keeps theta itself and adds u to
it; full HWA's DAC ranges live among the network's parameters, where `log_space` turns u
back into the additive update p (e^u - 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["from_log", "log_space", "log_step", "to_log"]


def to_log(tree):
    """theta = log(p) of every leaf (float32)."""
    return jax.tree.map(lambda v: jnp.log(jnp.asarray(v, jnp.float32)), tree)


def from_log(tree):
    """p = exp(theta) of every leaf."""
    return jax.tree.map(jnp.exp, tree)


def log_step(inner: optax.GradientTransformation, grads, state, params, *, log_params=None):
    """`inner`'s update of theta = log(params) for the gradient dL/dparams: (updates of theta, new state).

    Args:
      inner: the optimiser acting on theta.
      grads: dL/dp, the pytree of `params`.
      state: `inner`'s state (initialised on theta).
      params: the positive ranges p.
      log_params: theta, when the caller keeps it (PT); default log(params).
    """
    log_grads = jax.tree.map(lambda g, p: g * p, grads, params)
    return inner.update(log_grads, state, to_log(params) if log_params is None else log_params)


def log_space(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Run `inner` on log(params) of positive params: a step u on theta becomes the update p * expm1(u).

    Args:
      inner: the optimiser acting on theta = log(params), e.g. `optax.adam(schedule)`.

    Returns:
      An optax `GradientTransformation` on the params themselves; its `update` needs `params`.
    """

    def init(params):
        return inner.init(to_log(params))

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("log_space needs params in update()")
        updates, state = log_step(inner, grads, state, params)
        return jax.tree.map(lambda u, p: p * jnp.expm1(u), updates, params), state

    return optax.GradientTransformation(init, update)
