"""Model-level benchmark: float vs analog forward in JAX, and aihwkit-lightning, side by side.

    python experiments/bench_model.py [--models minilm,roberta-base] [--batch 32] [--length 128]
                                      [--chips 8] [--repeats 3] [--no-lightning]

For each model (all-MiniLM-L6-v2 with its real weights; a roberta-base-sized
encoder with random weights), on one batch of `batch x length` tokens, prints
tokens/s and ratios of: the float forward (jit); the analog forward with the
default `TileConfig` on a programmed, read-out chip (steady state); programming +
read-out per chip; `chips` chips mapped with vmap, lax.map, lax.map in chunks
(vmap over `chunk` chips per step) and a Python loop;
aihwkit-lightning's analog forward (torch, if installed); compile times (kept out of
the steady-state figures) and XLA's memory estimate of each compiled program.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import aimc_jax as aj
from aimc_jax.models import Encoder, EncoderConfig, from_pretrained, minilm_path

ROBERTA_BASE = dict(
    model_type="roberta",
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    pad_token_id=1,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
)


def load(name: str):
    if name == "minilm":
        return from_pretrained(minilm_path())
    config = EncoderConfig(**ROBERTA_BASE)
    module = Encoder(config)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), jnp.int32))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape), jnp.float32), shapes)
    return module, params


def timed(fn, *args, repeats: int):
    """(compile seconds, median steady seconds, XLA memory estimate in MiB) of jit(fn)(*args)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    mib = None
    if mem is not None:
        mib = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compile_s, float(np.median(times)), mib


def lightning_forward_time(name: str, batch: int, length: int, repeats: int):
    """Median seconds of aihwkit-lightning's analog forward of the same model, or None."""
    try:
        import torch
        from aihwkit_lightning.nn.conversion import convert_to_analog
        from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig
    except ImportError:
        return None
    from transformers import BertModel, RobertaConfig, RobertaModel

    torch.manual_seed(0)
    if name == "minilm":
        model = BertModel.from_pretrained(minilm_path(), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    else:
        cfg = {k: v for k, v in ROBERTA_BASE.items() if k != "model_type"}
        model = RobertaModel(RobertaConfig(**cfg, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    rpu = TorchInferenceRPUConfig()
    rpu.forward.inp_res = 254
    rpu.forward.out_res = 254
    rpu.forward.out_bound = 10.0
    rpu.forward.out_noise = 0.04
    rpu.mapping.max_input_size = 512
    rpu.pre_post.input_range.enable = True
    rpu.pre_post.input_range.learn_input_range = False
    rpu.pre_post.input_range.init_from_data = 0
    analog = convert_to_analog(model, rpu)
    analog.train()  # lightning draws output noise only in training mode; dropout is 0
    ids = torch.randint(5, 1000, (batch, length))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        analog(input_ids=ids, attention_mask=mask)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            analog(input_ids=ids, attention_mask=mask)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench(name: str, args) -> list[str]:
    module, variables = load(name)
    cfg = aj.TileConfig()
    tokens = args.batch * args.length
    ids = jnp.asarray(np.random.default_rng(1).integers(5, 1000, (args.batch, args.length)), jnp.int32)
    mask = jnp.ones_like(ids)
    ranges = aj.init_model_ranges(variables, cfg)
    rows = []

    def row(what, compile_s, seconds, mib, per=1):
        rate = tokens * per / seconds
        rows.append(
            f"| {name} | {what} | {compile_s:.1f} | {seconds * 1e3:.0f} | {rate:,.0f} | "
            f"{seconds / per / t_float:.2f} | {'' if mib is None else f'{mib:,.0f}'} |"
        )

    # Weights, ranges and states are arguments of every timed program (as in the
    # evaluator), never constants folded into it.
    c, t_float, m = timed(lambda p, i, k: module.apply(p, i, k), variables, ids, mask, repeats=args.repeats)
    row("float forward (JAX)", c, t_float, m)

    def program_read(v, r, key):
        k1, k2 = jax.random.split(key)
        return aj.read_model(aj.program_model(v, r, cfg, key=k1), 3600.0, cfg, key=k2)

    c, t_pr, m = timed(program_read, variables, ranges, jax.random.key(0), repeats=args.repeats)
    rows.append(
        f"| {name} | program + read, per chip | {c:.1f} | {t_pr * 1e3:.0f} | - | "
        f"{t_pr / t_float:.2f} | {'' if m is None else f'{m:,.0f}'} |"
    )
    state = jax.jit(program_read)(variables, ranges, jax.random.key(0))

    def apply(v, r, s, key):
        return aj.analog_apply(module, v, r, s, ids, mask, cfg, key=key)

    c, t_an, m = timed(apply, variables, ranges, state, jax.random.key(1), repeats=args.repeats)
    row("analog forward, 1 chip (steady state)", c, t_an, m)

    n = args.chips
    keys = jax.random.split(jax.random.key(2), n)
    # one chip programmed at a time (a vmap would hold every chip's programming arrays at once)
    states = jax.jit(lambda v, r, k: jax.lax.map(lambda ki: program_read(v, r, ki), k))(variables, ranges, keys)
    del state

    def over_chips(how, chunk=None):
        def fn(v, r, s, k):
            one = lambda sk: apply(v, r, *sk)  # noqa: E731
            return jax.vmap(one)((s, k)) if how == "vmap" else jax.lax.map(one, (s, k), batch_size=chunk)

        return fn

    strategies = {
        "vmap": over_chips("vmap"),
        "lax.map": over_chips("map"),
        f"lax.map in chunks of {args.chunk} (vmap inside)": over_chips("map", args.chunk),
    }
    for label, fn in strategies.items():
        try:
            c, t, m = timed(fn, variables, ranges, states, keys, repeats=max(1, args.repeats // 2))
            row(f"analog forward, {n} chips, {label}", c, t, m, per=n)
        except jax.errors.JaxRuntimeError as err:  # e.g. vmap of 8 roberta-base chips on 24 GiB
            reason = str(err).splitlines()[0][:100]
            rows.append(f"| {name} | analog forward, {n} chips, {label} | failed: {reason} | | | | |")
    single = jax.jit(apply)
    chip_states = [jax.tree.map(lambda a, i=i: a[i], states) for i in range(n)]
    start = time.perf_counter()
    jax.block_until_ready([single(variables, ranges, s, k) for s, k in zip(chip_states, keys, strict=True)])
    row(f"analog forward, {n} chips, Python loop", 0.0, time.perf_counter() - start, None, per=n)

    if args.lightning:
        t_l = lightning_forward_time(name, args.batch, args.length, args.repeats)
        if t_l is None:
            rows.append(f"| {name} | aihwkit-lightning | not installed | | | | |")
        else:
            rows.append(
                f"| {name} | aihwkit-lightning analog forward (torch) | - | {t_l * 1e3:.0f} | "
                f"{tokens / t_l:,.0f} | {t_l / t_float:.2f} | |"
            )
            rows.append(f"| {name} | **aimc_jax / lightning throughput** | | | **{t_l / t_an:.2f}x** | | |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,roberta-base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--chips", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=2, help="chips per step of the chunked strategy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-lightning", dest="lightning", action="store_false")
    args = parser.parse_args()
    print(
        f"# bench_model: jax {jax.__version__}, backend {jax.default_backend()} ({len(jax.devices())} device(s), "
        f"{jax.devices()[0].device_kind}), {platform.machine()}, batch {args.batch} x {args.length} tokens, "
        f"median of {args.repeats}"
    )
    print("\n| model | what | compile s | ms per batch | tokens/s | x float | XLA memory MiB |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for line in bench(name.strip(), args):
            print(line, flush=True)


if __name__ == "__main__":
    main()
