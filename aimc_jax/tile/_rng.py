"""A cheap counter-based Gaussian generator for the tile's noise draws.

The tile draws Gaussians per device when it programs and reads out a chip
(programming noise, drift exponents, read noise) and n_in_blocks x out per token
for the output noise of every MVM; with JAX's default threefry on a CPU the bits
alone cost more than the arithmetic that uses them. Here a threefry key gives two
32-bit seeds, and each element's bits are a hash of its index: a Weyl step and two
rounds of the `lowbias32` integer mixer (C. Wellons), then 23 bits -> uniform in
(-1, 1) -> sqrt(2) * erfinv (`bits_to_normal`). Pure elementwise code, so XLA fuses
it into the consumer, and it is vmap-invariant by construction (a function of
(key, index) only): vmap over keys equals a loop over keys.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NOISE_VERSION", "bits_to_normal", "hash_bits", "hash_normal"]

# Bumped whenever the noise streams change; experiments put it in their cache keys.
# 2: 23-bit uniforms (version 1 rounded its largest 24-bit value to u = 1, i.e. +inf,
#    once in 2**24 draws; the ADC clipped it to a full-scale spike).
# 3: programming noise, drift exponents and read noise drawn with this generator too
#    (noise_prng="hash"), and each layer's output noise keyed by fold_in(key, crc32(name))
#    instead of flax's rng stream (same statistics, other draws).
# 4: aihwkit's order by default (TileConfig.programmed_conductances="rescaled": drift and read
#    noise act on the programmed net weights re-converted at the crossbar's scale) and the
#    drift-compensation read-out through output noise and ADC (drift_readout="forward"), whose
#    output noise is drawn from fold_in(programming or read key, 2).
NOISE_VERSION = 4
"""Version of the tile's noise streams (the draws a key gives); results caches key on it."""


_GOLDEN = 0x9E3779B9  # the Weyl step: element i starts from i * _GOLDEN + seed 0
_GOLDEN_INVERSE = pow(_GOLDEN, -1, 2**32)


def _weyl_index(shape: tuple[int, ...], seeds):
    """The flat element index plus seed 0 * _GOLDEN^-1 (mod 2**32), so that times _GOLDEN it is i * _GOLDEN + seed 0.

    Built from one 1-D term per axis, each offset by a share of the seeds, so that no
    array of the output's size is independent of the key: XLA hoists a key-independent
    index (a plain iota) out of a scanned layer's while loop into a buffer of the draw's
    size that the loop carries and reads in every step (one per crossbar and draw: 8 MiB
    each for an output noise at 4,096 tokens), instead of computing it in place.
    """
    offset = seeds[0] * jnp.uint32(_GOLDEN_INVERSE)
    if not shape:
        return offset
    strides = np.cumprod((1, *shape[:0:-1]))[::-1]
    index = None
    for d, (n, stride) in enumerate(zip(shape, strides, strict=True)):
        share = offset - jnp.uint32(len(shape) - 1) * seeds[1] if d == 0 else seeds[1]
        term = jax.lax.broadcast_in_dim(
            jax.lax.iota(jnp.uint32, n) * jnp.uint32(int(stride)) + share, shape, (d,)
        )  # fmt: skip
        index = term if index is None else index + term
    return index


def _mix(h):
    """lowbias32: a 32-bit integer hash with low avalanche bias."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


def hash_normal(key, shape: tuple[int, ...], dtype=jnp.float32):
    """Standard normal draws of `shape`, determined by (key, element index).

    Args:
      key: a JAX PRNG key (any implementation).
      shape: output shape; at most 2**32 elements.
      dtype: floating output dtype.

    Returns:
      An array of N(0, 1) draws with 23-bit uniform resolution (always finite, |z| < 5.3).
    """
    return bits_to_normal(hash_bits(key, shape)).astype(dtype)


def hash_bits(key, shape: tuple[int, ...]):
    """uint32 bits of `shape`: element i gets mix(mix(i * 0x9E3779B9 + s0) ^ s1), (s0, s1) = bits(key, 2).

    Args:
      key: a JAX PRNG key (any implementation).
      shape: output shape; at most 2**32 elements (i is the row-major flat index).
    """
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"hash_normal draws at most 2**32 - 1 values per call, asked for {size}")
    # the barrier keeps XLA from fusing the (scalar) threefry seed computation into the
    # elementwise loop, where it would be recomputed for every element (measured 3x slower)
    seeds = jax.lax.optimization_barrier(jax.random.bits(key, (2,), jnp.uint32))
    h = _mix(_weyl_index(shape, seeds) * jnp.uint32(_GOLDEN))
    return _mix(h ^ seeds[1])


def bits_to_normal(h):
    """uint32 bits -> standard normal: the top 23 bits k give u = (k + 0.5) 2**-22 - 1.

    Every step is exact in float32 (k + 0.5 needs 24 significant bits), so u lies in
    [-1 + 2**-23, 1 - 2**-23] and erfinv(u) is finite for every input.
    """
    k = (h >> 9).astype(jnp.float32)
    u = (k + 0.5) * jnp.float32(2.0**-22) - 1.0
    return jnp.sqrt(jnp.float32(2.0)) * jax.lax.erf_inv(u)


def _device_prng(config) -> str:
    """The generator of a `TileConfig`'s per-chip draws (programming noise, drift exponents, read noise).

    The hash generator when `config.noise_prng` is "hash", else the key's own
    `jax.random.normal`: rbg-family bits are not vmap-invariant, and chips are
    programmed and read out vmapped over layers and keys.
    """
    return "hash" if config.noise_prng == "hash" else "jax"


def _normal(key, shape, prng: str):
    """Standard normal float32 draws: the hash generator, the key's own, or an rbg-family key seeded from it."""
    if prng == "hash":
        return hash_normal(key, shape)
    if prng != "jax":
        key = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl=prng)
    return jax.random.normal(key, shape, jnp.float32)
