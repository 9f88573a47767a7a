"""Cost of the checked mode (`aimc_jax.checked`): one MiniLM analog forward, plain jit vs checked, side by side.

    python experiments/bench_checked.py [--shape 32x128] [--repeats 4]

Prints the first call (trace + compile + run) and the steady time of each, and their ratios.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import jax.numpy as jnp
import numpy as np

import aimc_jax as aj
from aimc_jax.models import from_pretrained, minilm_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32x128", help="batch x length")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    batch, length = (int(v) for v in args.shape.lower().split("x"))
    module, variables = from_pretrained(minilm_path(), num_labels=2)
    cfg = aj.TileConfig()
    ranges = aj.init_model_ranges(variables, cfg)
    ids = jnp.asarray(np.random.default_rng(0).integers(1000, 20000, (batch, length)), jnp.int32)
    mask = jnp.ones_like(ids)

    def forward(v, r, ids, mask, key):
        return aj.analog_forward(module, v, r, ids, mask, cfg, t=3600.0, key=key)

    times = {}
    for name, fn in (("plain jit", jax.jit(forward)), ("checked", aj.checked(forward))):
        start = time.perf_counter()
        jax.block_until_ready(fn(variables, ranges, ids, mask, jax.random.key(0)))
        first = time.perf_counter() - start
        steady = []
        for i in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(variables, ranges, ids, mask, jax.random.key(i + 1)))
            steady.append(time.perf_counter() - start)
        times[name] = (first, float(np.median(steady)))
    print(f"MiniLM analog forward {args.shape}, {jax.device_count()} {jax.default_backend()} device(s)")
    for name, (first, steady) in times.items():
        print(f"  {name:10s} first call {first:6.2f} s   steady {steady:6.3f} s")
    (f0, s0), (f1, s1) = times["plain jit"], times["checked"]
    print(f"  checked/plain: first call {f1 / f0:.2f}x, steady {s1 / s0:.2f}x")


if __name__ == "__main__":
    main()
