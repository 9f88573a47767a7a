"""Strict test settings: explicit dtypes, no silent rank promotion, offline hub.

Compiled XLA programs are cached on disk (AIMC_JAX_CACHE, default
~/.cache/aimc_jax/xla) so that repeated runs skip most compilation.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
_cache = Path(os.environ.get("AIMC_JAX_CACHE", Path.home() / ".cache" / "aimc_jax")) / "xla"
jax.config.update("jax_compilation_cache_dir", str(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
