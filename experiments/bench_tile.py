"""Tile simulator benchmark: analog MVM cost over the float matmul, measured side by side.

    python experiments/bench_tile.py [--tokens 4096] [--repeats 5]

Prints ratios (absolute times on shared machines are noise): mvm / (x @ W) per layer
shape and output-noise PRNG, program + read per million weights, and vmap over 8
keys against 8 single calls.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import aimc_jax as aj


def _median_time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _paired_times(f, f_args, g, g_args, *, repeats):
    """Median times of f and g, measured alternately so that machine drift hits both alike."""
    jax.block_until_ready(f(*f_args))
    jax.block_until_ready(g(*g_args))
    tf, tg = [], []
    for _ in range(repeats):
        for fn, args, out in ((f, f_args, tf), (g, g_args, tg)):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            out.append(time.perf_counter() - start)
    return float(np.median(tf)), float(np.median(tg))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"# bench_tile: jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0].device_kind}")
    print(f"# {platform.processor() or platform.machine()}, tokens {args.tokens}, median of {args.repeats}")
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    matmul = jax.jit(lambda x, w: x @ w)

    print("\n| layer | noise PRNG | float ms | mvm ms | mvm / float |")
    print("|---|---|---|---|---|")
    for n_in, n_out in ((768, 3072), (3072, 768)):
        w = jnp.asarray(rng.normal(size=(n_in, n_out)).astype(np.float32) / np.sqrt(n_in))
        x = jnp.asarray(rng.normal(size=(args.tokens, n_in)).astype(np.float32))
        for prng in ("hash", "jax", "rbg"):
            cfg = aj.TileConfig(noise_prng=prng)
            ranges = aj.init_ranges(w, cfg, inputs=x)
            state = aj.read(aj.program(w, ranges, cfg, key=key), 3600.0, cfg, key=key)
            f = jax.jit(lambda s, r, x, k, cfg=cfg: aj.mvm(s, r, x, cfg, key=k))
            t_float, t_mvm = _paired_times(matmul, (x, w), f, (state, ranges, x, key), repeats=args.repeats)
            name = {"hash": "hash (default)", "jax": "threefry"}.get(prng, prng)
            print(f"| {n_in}x{n_out} | {name} | {t_float * 1e3:.1f} | {t_mvm * 1e3:.1f} | {t_mvm / t_float:.2f} |")

    cfg = aj.TileConfig()
    w = jnp.asarray(rng.normal(size=(768, 3072)).astype(np.float32) * 0.03)
    ranges = aj.init_ranges(w, cfg)

    @jax.jit
    def program_read(w, r, k):
        k1, k2 = jax.random.split(k)
        return aj.read(aj.program(w, r, cfg, key=k1), 3600.0, cfg, key=k2)

    t_pr = _median_time(program_read, w, ranges, key, repeats=args.repeats)
    t_float = _median_time(matmul, jnp.ones((args.tokens, 768), jnp.float32), w, repeats=args.repeats)
    print(
        f"\nprogram + read: {t_pr / (w.size / 1e6) * 1e3:.1f} ms per million weights "
        f"({t_pr / t_float:.2f}x one float 768x3072 matmul on {args.tokens} tokens)"
    )

    x = jnp.asarray(rng.normal(size=(args.tokens // 8, 768)).astype(np.float32))

    @jax.jit
    def one(k):
        k1, k2, k3 = jax.random.split(k, 3)
        s = aj.read(aj.program(w, ranges, cfg, key=k1), 3600.0, cfg, key=k2)
        return aj.mvm(s, ranges, x, cfg, key=k3)

    keys = jax.random.split(key, 8)
    batched = jax.jit(jax.vmap(one))
    t_vmap = _median_time(batched, keys, repeats=args.repeats)

    def loop(keys):
        return [one(k) for k in keys]

    t_loop = _median_time(loop, keys, repeats=args.repeats)
    print(
        f"vmap over 8 keys / 8 single calls (program+read+mvm, 768x3072, {args.tokens // 8} tokens): "
        f"{t_vmap / t_loop:.2f}"
    )


if __name__ == "__main__":
    main()
