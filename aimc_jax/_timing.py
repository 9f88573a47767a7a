"""Timing programs side by side: compile first, then time every program in interleaved rounds.

    thunk, compile_s, mib = compiled(fn, *args)  # jit, lower and compile; warmed up once
    seconds = interleaved({"float": float_thunk, "analog": analog_thunk}, repeats=3)  # median seconds each

Ratios of two medians from the same rounds keep slow drifts of a shared machine's
load out of the comparison (`experiments/bench_model.py`, `aimc-jax bench`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import jax
import numpy as np

__all__ = ["compiled", "interleaved"]


def compiled(fn, *args) -> tuple[Callable[[], object], float, float | None]:
    """(a thunk running jit(fn)(*args) to completion, compile seconds, XLA memory estimate in MiB)."""
    start = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    mem = exe.memory_analysis()
    mib = None
    if mem is not None:
        mib = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20
    thunk = lambda: jax.block_until_ready(exe(*args))  # noqa: E731
    thunk()  # warm-up
    return thunk, compile_s, mib


def interleaved(thunks: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each thunk, timed in rounds (one call of every thunk per round).

    Interleaving keeps slow drifts of the machine's load (other jobs, clocks) out of
    the ratios: measured back to back, the first program timed was repeatedly the
    slowest on a shared machine.
    """
    times = {k: [] for k in thunks}
    for _ in range(repeats):
        for k, thunk in thunks.items():
            start = time.perf_counter()
            thunk()
            times[k].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}
