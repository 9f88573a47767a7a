"""Per-chip device-noise generator benchmark: program + read with threefry against the hash generator.

    python experiments/bench_device_noise.py [--layers 6] [--rounds 7]

Times one jitted program + read of MiniLM-sized analog layers, each shape stacked
over `--layers` encoder layers and vmapped as `program_model` / `read_model` do:
(384, 384) x 4 (Q, K, V, attention output), (384, 1536), (1536, 384). The two
generators of the programming noise, drift exponents and read noise are the
`TileConfig.noise_prng` settings "jax" (threefry) and "hash"; rounds alternate
between them and the medians are compared (absolute times on shared machines are noise).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import aimc_jax as aj

SHAPES = {"q": (384, 384), "k": (384, 384), "v": (384, 384), "o": (384, 384), "up": (384, 1536), "down": (1536, 384)}
GENERATORS = {"threefry": "jax", "hash": "hash"}


def _model(n_layers: int, config: aj.TileConfig):
    """Stacked weights and ranges per shape group: {shape: (weights (L, in, out), ranges with a leading L axis)}."""
    rng = np.random.default_rng(0)
    groups = {}
    for name, shape in SHAPES.items():
        w = rng.normal(size=(n_layers, *shape)).astype(np.float32) * 0.05
        ranges = [aj.init_ranges(w[i], config) for i in range(n_layers)]
        groups.setdefault(shape, []).append((name, jnp.asarray(w), jax.tree.map(lambda *a: jnp.stack(a), *ranges)))
    return groups


def _program_read(groups, config: aj.TileConfig, t: float):
    """A jitted function key -> {name: TileState}: every layer programmed and read out, vmapped over layers."""

    def one(w, r, k):
        k1, k2 = jax.random.split(k)
        return aj.read(aj.program(w, r, config, key=k1), t, config, key=k2)

    @jax.jit
    def run(key):
        out = {}
        for members in groups.values():
            for i, (name, w, r) in enumerate(members):
                keys = jax.random.split(jax.random.fold_in(key, i), w.shape[0])
                out[name] = jax.vmap(one)(w, r, keys)
        return out

    return run


def _interleaved_medians(fns: dict, arg, rounds: int) -> dict:
    """Median seconds per function, the functions timed in turn within each round."""
    for fn in fns.values():
        jax.block_until_ready(fn(arg))  # compile + warm-up
    times = {name: [] for name in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in order:
            start = time.perf_counter()
            jax.block_until_ready(fns[name](arg))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(v)) for name, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--time", type=float, default=3600.0, help="inference time of the read-out (s)")
    args = parser.parse_args()
    device = jax.devices()[0].device_kind
    print(f"# bench_device_noise: jax {jax.__version__}, backend {jax.default_backend()}, {device}")
    print(f"# {platform.processor() or platform.machine()}, {args.layers} layers, median of {args.rounds} rounds")
    key = jax.random.key(0)
    groups = _model(args.layers, aj.TileConfig())
    n_weights = sum(int(np.prod(w.shape)) for members in groups.values() for _, w, _ in members)

    print("\n| layers (stacked x vmapped) | threefry ms | hash ms | threefry / hash |")
    print("|---|---|---|---|")
    rows = [(f"{s[0]}x{s[1]} x{len(m)} x{args.layers}", {s: m}) for s, m in groups.items()]
    rows.append((f"all ({n_weights / 1e6:.1f} M weights)", groups))
    for label, subset in rows:
        fns = {g: _program_read(subset, aj.TileConfig(noise_prng=p), args.time) for g, p in GENERATORS.items()}
        t = _interleaved_medians(fns, key, args.rounds)
        print(f"| {label} | {t['threefry'] * 1e3:.1f} | {t['hash'] * 1e3:.1f} | {t['threefry'] / t['hash']:.2f} |")


if __name__ == "__main__":
    main()
