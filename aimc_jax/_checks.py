"""Eager input checks shared by the public functions (skipped for traced values)."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["check_finite", "check_positive", "is_concrete", "require_key"]


def is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def require_key(key, where: str):
    """Raise a clear error when a PRNG key is missing."""
    if key is None:
        raise TypeError(f"{where} needs an explicit PRNG key: pass key=jax.random.key(seed)")
    return key


def check_finite(x, what: str) -> None:
    """ValueError if a concrete array holds NaN or inf."""
    if x is not None and is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{what} contains NaN or inf")


def check_positive(x, what: str) -> None:
    """ValueError if a concrete array is not everywhere finite and > 0."""
    if x is None or not is_concrete(x):
        return
    a = np.asarray(x)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or inf")
    if not np.all(a > 0):
        raise ValueError(f"{what} must be > 0 everywhere (min {a.min():.4g})")
