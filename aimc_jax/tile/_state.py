"""The data of a programmed tile: `ProgrammedTile` (right after programming) and `TileState` (read out at t).

Both are immutable pytrees: arrays (block shape, see `_layout`) as children, the
crossbar split static. `program` makes the first, `read` the second, `mvm` uses the second.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from aimc_jax.tile._layout import TileLayout, split_last

__all__ = ["ProgrammedTile", "TileState"]

_meta = dict(metadata={"static": True})


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProgrammedTile:
    """A programmed layer: device conductances right after programming.

    Arrays have the block shape (n_in, n_out, block_in, block_out); padding
    devices (uneven splits) are zero.

    Attributes:
      g_plus: programmed conductance of the positive device of each differential pair, in uS.
      g_minus: programmed conductance of the negative device, in uS.
      nu_plus: drift exponent of the positive device, sampled once per device.
      nu_minus: drift exponent of the negative device, sampled once per device.
      reference: (n_in, n_out) drift-compensation reference, mean |g+ - g-| / g_max
        over each crossbar's devices (one-hot read-out right after programming).
      column: (n_in, out) the column ranges gamma the chip was programmed with.
      layout: the crossbar split (static).
    """

    g_plus: jax.Array
    g_minus: jax.Array
    nu_plus: jax.Array
    nu_minus: jax.Array
    reference: jax.Array
    column: jax.Array
    layout: TileLayout = dataclasses.field(**_meta)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TileState:
    """A layer read out at one inference time: what every MVM until the next read uses.

    Attributes:
      weights: (n_in, n_out, block_in, block_out) normalised conductances
        (g+ - g-) / g_max after drift and 1/f read noise.
      alpha: (n_in, n_out) global drift-compensation factor (1 when off).
      column: (n_in, out) the column ranges gamma the chip was programmed with.
      layout: the crossbar split (static).
    """

    weights: jax.Array
    alpha: jax.Array
    column: jax.Array
    layout: TileLayout = dataclasses.field(**_meta)


def _blocked_column(gamma, layout: TileLayout):
    """(n_in, out) -> (n_in, n_out, block_out); padding columns get 1.0."""
    return split_last(gamma, layout.out_sizes, fill=1.0)


def _crossbar_mean_abs(w, mask: np.ndarray):
    """Mean |w| over each crossbar's real devices: (n_in, n_out, bi, bo) -> (n_in, n_out)."""
    counts = mask.sum(axis=(2, 3))
    return jnp.sum(jnp.abs(w), axis=(2, 3)) / counts
