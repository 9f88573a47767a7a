"""Where aimc_jax keeps checkpoints and compiled programs: `$AIMC_JAX_CACHE`, else ~/.cache/aimc_jax."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax

__all__ = ["atomic_write", "cache_dir", "enable_compilation_cache"]


def cache_dir(*parts: str) -> Path:
    """`$AIMC_JAX_CACHE/<parts...>` (default ~/.cache/aimc_jax), created if missing."""
    root = Path(os.environ.get("AIMC_JAX_CACHE", Path.home() / ".cache" / "aimc_jax")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def enable_compilation_cache() -> Path:
    """Cache compiled XLA programs on disk under `cache_dir("xla")` (compiles cost seconds on CPU)."""
    path = cache_dir("xla")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def atomic_write(path: Path, data: bytes | str | dict) -> None:
    """Write a file so that an interrupt leaves either the old or the new content (dicts as JSON)."""
    path = Path(path)
    if isinstance(data, dict):
        data = json.dumps(data, indent=1, sort_keys=True, default=str)
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
