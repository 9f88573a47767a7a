"""Chip mapping strategies agree; sharding over devices equals the single-device run."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aimc_jax as aj

CFG = aj.TileConfig()
_rng = np.random.default_rng(0)
W = jnp.asarray(_rng.normal(size=(600, 300)).astype(np.float32) * 0.05)
X = jnp.asarray(_rng.normal(size=(16, 600)).astype(np.float32))
RANGES = aj.init_ranges(W, CFG, inputs=X)


def one_chip(key):
    k1, k2, k3 = jax.random.split(key, 3)
    state = aj.read(aj.program(W, RANGES, CFG, key=k1), 86400.0, CFG, key=k2)
    return {"y": aj.mvm(state, RANGES, X, CFG, key=k3), "alpha": state.alpha}


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape
        # equal up to rare single ADC-step flips from float summation order
        assert np.mean(np.abs(x - y) > 1e-5 * np.abs(y).max()) < 1e-3


def test_strategies_agree():
    keys = jax.random.split(jax.random.key(0), 5)
    ref = aj.map_chips(one_chip, keys, strategy="loop")
    assert ref["y"].shape == (5, 16, 300)
    for strategy, chunk in (("vmap", None), ("map", None), ("map", 2), ("auto", None)):
        _close(aj.map_chips(one_chip, keys, strategy=strategy, chunk_size=chunk), ref)
    assert aj.default_strategy("cpu") == "loop" and aj.default_strategy("gpu") == "vmap"
    with pytest.raises(ValueError, match="strategy"):
        aj.map_chips(one_chip, keys, strategy="pmap")


_SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import aimc_jax as aj
    from tests.test_parallel import one_chip, _close, W, RANGES, CFG
    assert len(jax.devices()) == 2, jax.devices()
    mesh = aj.chip_mesh()
    keys = jax.random.split(jax.random.key(0), 3)  # 3 chips on 2 devices: padded and trimmed
    sharded = aj.map_chips(one_chip, keys, mesh=mesh)
    _close(sharded, aj.map_chips(one_chip, keys, strategy="loop"))
    # data parallel: a batch split over the devices, one replicated chip
    k = jax.random.key(1)
    state = aj.read(aj.program(W, RANGES, CFG, key=k), 60.0, CFG, key=k)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(8, 600)).astype(np.float32))
    f = jax.jit(lambda x: aj.mvm(state, RANGES, x, CFG, key=k))  # output noise included
    y_sharded = f(aj.shard_batch(x, mesh))
    assert len(y_sharded.sharding.device_set) == 2
    _close(y_sharded, f(x))
    print("SHARDED-OK")
    """
)


def test_sharding_over_two_host_devices_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert "SHARDED-OK" in proc.stdout, proc.stderr[-3000:]
