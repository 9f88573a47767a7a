"""Mapping Monte-Carlo chips over keys, and sharding chips or batches over devices.

    outs = map_chips(lambda key: evaluate(key), keys, strategy="auto")

`strategy` is "vmap" (one batched program: meant for accelerators), "map"
(`lax.map`, optionally in chunks: one chip's memory at a time), "loop" (a Python
loop over a jitted function) or "auto": "loop" on CPU, "vmap" elsewhere. On 2 CPU
cores experiments/bench_model.py measured, per chip over 8 chips and relative to the
float forward: roberta-base (quiet machine) loop 1.28x, vmap 1.45x, lax.map 2.93x;
MiniLM (another job on the cores) map 1.05x, vmap 1.13x, loop 1.16x. The loop is
never far from the best and lax.map can be 2.3x slower (layers with several input
crossbars: the noisy per-crossbar work inside a while loop; a single 768x3072 layer
shows it too), so CPU loops. With `mesh`, the chip axis is
sharded over the mesh's devices (vmap strategy); results equal the unsharded run.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["STRATEGIES", "chip_mesh", "default_strategy", "map_chips", "shard_batch"]

STRATEGIES = ("auto", "vmap", "map", "loop")


def default_strategy(backend: str | None = None) -> str:
    """The measured best chip-mapping strategy for a backend (see experiments/bench_model.py)."""
    return "loop" if (backend or jax.default_backend()) == "cpu" else "vmap"


def chip_mesh(devices=None, axis: str = "chips") -> Mesh:
    """A 1-D mesh over `devices` (default: all of `jax.devices()`, every host's under jax.distributed)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (axis,))


def stack_trees(outs):
    """Stack a list of same-structure pytrees along a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outs)


def map_chips(fn: Callable, keys, *, strategy: str = "auto", chunk_size: int | None = None, mesh: Mesh | None = None):
    """Evaluate `fn(key)` for every key (one chip each) and stack the results on axis 0.

    Args:
      fn: a pure function of one PRNG key (close over everything else).
      keys: stacked keys, shape (n_chips,).
      strategy: "auto", "vmap", "map" or "loop".
      chunk_size: with "map", chips evaluated together per step (`lax.map(batch_size=...)`).
      mesh: shard the chips over this mesh's first axis (uses vmap; n_chips is padded
        to a multiple of the device count, and the padding dropped).

    Returns:
      The pytree of `fn`'s outputs with a leading chip axis; identical whichever
      strategy computed it (up to float summation order).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    n = len(keys)
    if n == 0:
        raise ValueError("map_chips needs at least one key")
    if mesh is not None:
        axis = mesh.axis_names[0]
        n_dev = mesh.shape[axis]
        padded = -(-n // n_dev) * n_dev
        if padded != n:
            keys = jnp.concatenate([keys, jax.random.split(keys[-1], padded - n)])
        keys = jax.device_put(keys, NamedSharding(mesh, PartitionSpec(axis)))
        out = jax.jit(jax.vmap(fn))(keys)
        return jax.tree.map(lambda a: a[:n], out)
    if strategy == "auto":
        strategy = default_strategy()
    if strategy == "vmap":
        return jax.jit(jax.vmap(fn))(keys)
    if strategy == "map":
        return jax.jit(lambda k: jax.lax.map(fn, k, batch_size=chunk_size))(keys)
    single = jax.jit(fn)
    return stack_trees([single(k) for k in keys])


def shard_batch(batch, mesh: Mesh, axis: str | None = None):
    """Place a batch (pytree of arrays with a leading batch axis) split over the mesh's devices.

    Under `jit`, a forward pass on a sharded batch runs data-parallel (the chip
    state is replicated); the batch size must be a multiple of the device count.
    """
    axis = axis or mesh.axis_names[0]
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(axis)))
