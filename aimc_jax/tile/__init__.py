"""The hardware model: PCM crossbar tiles as pure functions of immutable pytrees.

    chip  = program(weight, ranges, config, key=k1)   # once per chip
    state = read(chip, t, config, key=k2)             # once per chip and drift time
    y     = mvm(state, ranges, x, config, key=k3)     # per batch (fresh output noise)

`TileConfig` holds every number (static under jit), `Ranges` the layer's trainable
ranges, `tile_layout` the 512 x 512 split, `Device` the physics of one conductance (`PCM`
by default; `TileConfig.device` names it in `DEVICES`, `register_device` adds one). Knows nothing about networks, data
or optimisers; the package root re-exports these names but the four of the device protocol.
"""

from aimc_jax.tile._config import TileConfig
from aimc_jax.tile._device import DEVICES, PCM, Device, register_device
from aimc_jax.tile._layout import TileLayout, tile_layout
from aimc_jax.tile._mvm import mvm
from aimc_jax.tile._program import fresh_state, program, read
from aimc_jax.tile._quant import fake_quantize
from aimc_jax.tile._ranges import Ranges, init_ranges
from aimc_jax.tile._rng import NOISE_VERSION
from aimc_jax.tile._state import ProgrammedTile, TileState

__all__ = [
    "DEVICES",
    "NOISE_VERSION",
    "PCM",
    "Device",
    "ProgrammedTile",
    "Ranges",
    "TileConfig",
    "TileLayout",
    "TileState",
    "fake_quantize",
    "fresh_state",
    "init_ranges",
    "mvm",
    "program",
    "read",
    "register_device",
    "tile_layout",
]
