"""Input checks shared by the public functions: eager on concrete values, and under jit in checked mode.

Concrete arguments are checked in Python and raise `ValueError` at once. Traced
arguments (inside `jax.jit`, `vmap`, `grad`) cannot be looked at; there a check is
skipped, unless the function runs under `checked(fn)`, which turns every guard into
a `jax.experimental.checkify.check` and raises the first failure after the call.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = [
    "check_finite",
    "check_positive",
    "check_times",
    "checked",
    "checking",
    "guard",
    "is_concrete",
    "require_key",
]

_CHECKING = contextvars.ContextVar("aimc_jax_checking", default=False)
_LAYER = contextvars.ContextVar("aimc_jax_scanned_layer", default=None)


def is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def require_key(key, where: str):
    """Raise a clear error when a PRNG key is missing."""
    if key is None:
        raise TypeError(f"{where} needs an explicit PRNG key: pass key=jax.random.key(seed)")
    return key


def check_times(t, where: str) -> None:
    """ValueError unless the concrete drift time(s) `t` are a non-empty set of finite seconds >= 0.

    The one rule of every entry point (t = 0 is the moment of programming); traced
    times are checked by `guard` where they are used (`tile._program._check_time`).
    """
    a = np.atleast_1d(np.asarray(t, np.float64)) if is_concrete(t) else None
    if a is not None and (a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0)):
        raise ValueError(f"{where}: drift time(s) t must be finite and >= 0 seconds, got {t!r}")


def checking() -> bool:
    """True while a function is traced under `checked` (the guards then emit checkify checks)."""
    return _CHECKING.get()


def guard(ok, message: str, **values) -> None:
    """Under `checked`, a checkify check that the traced boolean array `ok` holds everywhere.

    `message` may name `values` in braces (formatted at run time, e.g. "min {low}").
    Outside `checked` a traced guard is skipped (the caller checks concrete values eagerly).
    """
    if checking():
        checkify.check(jnp.all(ok), message, **values)


@contextlib.contextmanager
def scanned_layer(index):
    """While tracing the body of a scan over layers: its (traced) layer index, for checked-mode messages."""
    token = _LAYER.set(index)
    try:
        yield
    finally:
        _LAYER.reset(token)


def scanned_layer_index():
    """The traced layer index set by `scanned_layer`, or None outside a scanned layer."""
    return _LAYER.get()


def check_finite(x, what: str, **values) -> None:
    """ValueError if a concrete array holds NaN or inf (a checkify check for a traced one under `checked`).

    `values` fill braces in `what` under `checked` (traced values, e.g. a layer index).
    """
    if x is None:
        return
    if not is_concrete(x):
        guard(jnp.isfinite(x), f"{what} contains NaN or inf", **values)
    elif not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{what} contains NaN or inf")


def check_positive(x, what: str) -> None:
    """ValueError if a concrete array is not everywhere finite and > 0 (checked under `checked` when traced)."""
    if x is None:
        return
    if not is_concrete(x):
        guard(jnp.isfinite(x), f"{what} contains NaN or inf")
        guard(x > 0, f"{what} must be > 0 everywhere (min {{low}})", low=jnp.min(x))
        return
    a = np.asarray(x)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or inf")
    if not np.all(a > 0):
        raise ValueError(f"{what} must be > 0 everywhere (min {a.min():.4g})")


@contextlib.contextmanager
def _checking_on():
    token = _CHECKING.set(True)
    try:
        yield
    finally:
        _CHECKING.reset(token)


def checked(fn, *, jit: bool = True, errors=checkify.user_checks):
    """`fn` with every aimc_jax guard active under jit: the checked mode.

    Returns a function with the signature of `fn` that traces `fn` under
    `jax.experimental.checkify` with the library's guards turned into checks (finite
    and positive ranges, finite weights, inputs and drift times, token ids inside the
    embedding tables) and raises `checkify.JaxRuntimeError` naming the first failed
    check, with the argument and layer it concerns, after the call. Costs one extra
    compilation and a few reductions per guarded array; meant for the first batch of
    a run (`evaluate_analog(..., checked=True)`, `optimize_ranges(..., checked=True)`),
    not for every step.

    Args:
      fn: a function calling aimc_jax (e.g. a loss of ranges, or `analog_forward`).
      jit: compile the checked function with `jax.jit` (default); False runs it
        un-jitted (guards inside `fn`'s own `jax.jit` calls are still traced).
      errors: the checkify error set; `checkify.user_checks` (default) checks the
        library's guards only, `checkify.all_checks` also flags NaN produced anywhere
        (noisier: it fires on NaN that a later `where` would discard).

    Guards inside jitted functions that were already traced outside `checked` (a
    compiled cache entry) are not re-traced and stay unchecked; the library's own
    entry points trace the guards in `checked`'s trace.
    """
    run = checkify.checkify(fn, errors=errors)
    if jit:
        run = jax.jit(run)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _checking_on():
            err, out = run(*args, **kwargs)
        err.throw()
        return out

    return wrapper
