"""Crossbar tiling: how a (in, out) weight is split into <= 512 x 512 crossbars.

`tile_layout` gives the near-equal split (768 -> 384 + 384, 3072 -> 6 x 512).
Internally every layer is held as a dense block array of shape
(n_in_blocks, n_out_blocks, block_in, block_out), zero-padded where the split is
uneven, so that all crossbars run in one batched contraction.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from aimc_jax.tile._config import TileConfig

__all__ = ["TileLayout", "tile_layout"]


def _split(n: int, max_size: int) -> tuple[int, ...]:
    count = math.ceil(n / max_size)
    base, extra = divmod(n, count)
    return tuple(base + 1 if i < extra else base for i in range(count))


class TileLayout(NamedTuple):
    """The crossbar split of one layer.

    Attributes:
      in_features: the layer's number of inputs.
      out_features: the layer's number of outputs.
      in_sizes: rows of each input block (near-equal, larger blocks first).
      out_sizes: columns of each output block.
    """

    in_features: int
    out_features: int
    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]

    @property
    def n_in(self) -> int:
        return len(self.in_sizes)

    @property
    def n_out(self) -> int:
        return len(self.out_sizes)

    @property
    def block_in(self) -> int:
        return self.in_sizes[0]

    @property
    def block_out(self) -> int:
        return self.out_sizes[0]

    @property
    def n_tiles(self) -> int:
        return self.n_in * self.n_out

    @property
    def in_even(self) -> bool:
        return len(set(self.in_sizes)) == 1

    @property
    def out_even(self) -> bool:
        return len(set(self.out_sizes)) == 1


def tile_layout(in_features: int, out_features: int, config: TileConfig) -> TileLayout:
    """Near-equal split of a (in_features, out_features) weight into crossbars.

    Args:
      in_features: rows of the weight (inputs of the layer).
      out_features: columns of the weight (outputs).
      config: gives `max_input_size` and `max_output_size` (None: the outputs are not
        split, every crossbar spans all of them: aihwkit's inputs-only tiling).

    Returns:
      A `TileLayout`; e.g. (768, 3072) -> in_sizes (384, 384), out_sizes 6 x 512.
    """
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"tile_layout: {name} must be a positive int, got {value!r}")
    max_out = config.max_output_size or int(out_features)  # None: inputs-only tiling, one slab over all outputs
    return _tile_layout(int(in_features), int(out_features), config.max_input_size, max_out)


@functools.cache
def _tile_layout(in_features, out_features, max_in, max_out) -> TileLayout:
    return TileLayout(in_features, out_features, _split(in_features, max_in), _split(out_features, max_out))


@functools.cache
def _padded_index(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For a split, the source index of every padded slot and whether it is real."""
    block = sizes[0]
    index = np.zeros((len(sizes), block), np.int32)
    valid = np.zeros((len(sizes), block), bool)
    start = 0
    for a, size in enumerate(sizes):
        index[a, :size] = np.arange(start, start + size)
        valid[a, :size] = True
        start += size
    return index, valid


def split_last(x, sizes: tuple[int, ...], fill=0.0):
    """(..., sum(sizes)) -> (..., n_blocks, block), padded with `fill` where uneven."""
    n, block = len(sizes), sizes[0]
    if len(set(sizes)) == 1:
        return x.reshape(*x.shape[:-1], n, block)
    index, valid = _padded_index(sizes)
    valid = valid.reshape((1,) * (x.ndim - 1) + valid.shape)
    return jnp.where(valid, jnp.take(x, index, axis=-1), jnp.asarray(fill, x.dtype))


def merge_last(x, sizes: tuple[int, ...]):
    """(..., n_blocks, block) -> (..., sum(sizes)), dropping the padding."""
    flat = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    if len(set(sizes)) == 1:
        return flat
    _index, valid = _padded_index(sizes)
    return jnp.take(flat, np.flatnonzero(valid.reshape(-1)), axis=-1)


def valid_mask(layout: TileLayout) -> np.ndarray:
    """Bool (n_in, n_out, block_in, block_out): which devices of the block array exist."""
    _, vin = _padded_index(layout.in_sizes)
    _, vout = _padded_index(layout.out_sizes)
    return vin[:, None, :, None] & vout[None, :, None, :]


def to_blocks(weight, layout: TileLayout):
    """(in, out) weight -> (n_in, n_out, block_in, block_out), zero-padded."""
    w = split_last(weight, layout.out_sizes)  # (in, n_out, bo)
    w = jnp.moveaxis(w, 0, -1)  # (n_out, bo, in)
    w = split_last(w, layout.in_sizes)  # (n_out, bo, n_in, bi)
    return jnp.transpose(w, (2, 0, 3, 1))


def from_blocks(blocks, layout: TileLayout):
    """Inverse of `to_blocks`: (n_in, n_out, bi, bo) -> (in, out)."""
    w = jnp.transpose(blocks, (1, 3, 0, 2))  # (n_out, bo, n_in, bi)
    w = merge_last(w, layout.in_sizes)  # (n_out, bo, in)
    w = jnp.moveaxis(w, -1, 0)  # (in, n_out, bo)
    return merge_last(w, layout.out_sizes)
