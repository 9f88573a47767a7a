"""aimc_jax: pure-JAX simulation of analog in-memory computing (AIMC) accelerators.

Crossbar tiles are parameter pytrees with jitted noisy matrix-vector multiplies
(DAC/ADC, PCM programming noise, drift, read noise, output noise, drift
compensation, 512 x 512 tiling); see `program`, `read`, `mvm`. The hardware model is
`aimc_jax.tile`; its public names are re-exported here.
"""

from aimc_jax._cache import cache_dir, enable_compilation_cache
from aimc_jax._checks import checked
from aimc_jax._parallel import chip_mesh, default_strategy, map_chips, shard_batch
from aimc_jax.models._analog import (
    AnalogDense,
    LayerConfigs,
    analog_apply,
    analog_forward,
    analog_layers,
    collect_layer_inputs,
    count_tiles,
    fresh_chip,
    init_model_ranges,
    program_model,
    read_model,
    weight_error_std,
)
from aimc_jax.models._nnx import AnalogKernel, AnalogLinear, to_analog
from aimc_jax.tile import (
    NOISE_VERSION,
    ProgrammedTile,
    Ranges,
    TileConfig,
    TileLayout,
    TileState,
    fake_quantize,
    fresh_state,
    init_ranges,
    mvm,
    program,
    read,
    tile_layout,
)

__version__ = "0.1.0"

__all__ = [
    "NOISE_VERSION",
    "AnalogDense",
    "AnalogKernel",
    "AnalogLinear",
    "LayerConfigs",
    "ProgrammedTile",
    "Ranges",
    "TileConfig",
    "TileLayout",
    "TileState",
    "analog_apply",
    "analog_forward",
    "analog_layers",
    "cache_dir",
    "checked",
    "chip_mesh",
    "collect_layer_inputs",
    "count_tiles",
    "default_strategy",
    "enable_compilation_cache",
    "fake_quantize",
    "fresh_chip",
    "fresh_state",
    "init_model_ranges",
    "init_ranges",
    "map_chips",
    "mvm",
    "program",
    "program_model",
    "read",
    "read_model",
    "shard_batch",
    "tile_layout",
    "to_analog",
    "weight_error_std",
]
