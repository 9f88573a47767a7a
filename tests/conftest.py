"""Strict test settings: explicit dtypes, no silent rank promotion, offline hub.

Compiled XLA programs are cached on disk (AIMC_JAX_CACHE, default
~/.cache/aimc_jax/xla) so that repeated runs skip most compilation.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax

import aimc_jax

jax.config.update("jax_numpy_rank_promotion", "raise")
aimc_jax.enable_compilation_cache()
