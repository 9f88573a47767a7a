"""Model-level benchmark: float vs analog forward in JAX, and aihwkit-lightning, side by side.

    python experiments/bench_model.py [--models minilm,roberta-base] [--batch 32] [--length 128]
                                      [--chips 8] [--repeats 3] [--no-lightning]

For each model (all-MiniLM-L6-v2 with its real weights; a roberta-base-sized
encoder with random weights), on one batch of `batch x length` tokens, prints
tokens/s and ratios of: the float forward (jit); the analog forward with the
default `TileConfig` on a programmed, read-out chip (steady state), and on the same chip
without output noise (`out_noise=0`: what the noise draws cost); programming +
read-out per chip; `chips` chips mapped with vmap, lax.map, lax.map in chunks
(vmap over `chunk` chips per step) and a Python loop;
aihwkit-lightning's analog forward (torch, if installed); compile times (kept out of
the steady-state figures) and XLA's memory estimate of each compiled program.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import aimc_jax as aj
from aimc_jax._timing import compiled, interleaved  # bench_pt.py imports them from here too
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


def load(name: str, num_labels: int | None = None):
    """(module, variables): MiniLM's real weights, or the roberta-base-sized encoder with random weights.

    `num_labels` adds a classification head of that size (initialised, not trained); None: no head.
    """
    if name == "minilm":
        return from_pretrained(minilm_path(), num_labels=num_labels)
    config = EncoderConfig(**ROBERTA_BASE, num_labels=num_labels)
    module = Encoder(config)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), jnp.int32))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.02, s.shape), jnp.float32), shapes)
    return module, params


def rss_gib() -> str:
    """Resident and peak resident memory of this process (Linux /proc), for the progress log."""
    try:
        with open("/proc/self/status") as f:
            kb = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
        return f"RSS {int(kb['VmRSS'].split()[0]) / 2**20:.1f} GiB, peak {int(kb['VmHWM'].split()[0]) / 2**20:.1f} GiB"
    except OSError:
        return "RSS unknown"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} ({rss_gib()})", file=sys.stderr, flush=True)


def lightning_forward(name: str, batch: int, length: int):
    """A thunk running aihwkit-lightning's analog forward of the same model once (warmed up), or None."""
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

    def run():
        with torch.no_grad():
            analog(input_ids=ids, attention_mask=mask)

    run()
    return run


def bench(name: str, args) -> list[str]:
    module, variables = load(name)
    cfg = aj.TileConfig()
    tokens = args.batch * args.length
    ids = jnp.asarray(np.random.default_rng(1).integers(5, 1000, (args.batch, args.length)), jnp.int32)
    mask = jnp.ones_like(ids)
    ranges = aj.init_model_ranges(variables, cfg)
    # Everything is compiled first, then timed in interleaved rounds. Weights, ranges,
    # states and token ids are arguments of every program (as in the evaluator),
    # never constants folded into it.
    programs, per, info, failed = {}, {}, {}, []

    def add(label, fn, *fn_args, chips=1):
        try:
            programs[label], c, mib = compiled(fn, *fn_args)
        except jax.errors.JaxRuntimeError as err:  # e.g. vmap of 8 roberta-base chips on 24 GiB
            failed.append((label, str(err).splitlines()[0][:100]))
            log(f"{name}: {label}: failed")
            return
        per[label], info[label] = chips, (c, mib)
        log(f"{name}: compiled and warmed up {label!r} in {c:.0f} s")

    add("float forward (JAX)", lambda p, i, k: module.apply(p, i, k), variables, ids, mask)

    def program_read(v, r, key):
        k1, k2 = jax.random.split(key)
        return aj.read_model(aj.program_model(v, r, cfg, key=k1), 3600.0, cfg, key=k2)

    add("program + read, per chip", program_read, variables, ranges, jax.random.key(0))
    state = jax.jit(program_read)(variables, ranges, jax.random.key(0))

    def applying(c):
        def apply(v, r, s, key, i, m):
            return aj.analog_apply(module, v, r, s, i, m, c, key=key)

        return apply

    apply = applying(cfg)
    add("analog forward, 1 chip (steady state)", apply, variables, ranges, state, jax.random.key(1), ids, mask)
    quiet = applying(dataclasses.replace(cfg, out_noise=0.0))  # what the output noise costs: the same chip without it
    add("analog forward, 1 chip, no output noise", quiet, variables, ranges, state, jax.random.key(1), ids, mask)
    n = args.chips
    keys = jax.random.split(jax.random.key(2), n)
    # one chip programmed at a time (a vmap would hold every chip's programming arrays at once)
    states = jax.jit(lambda v, r, k: jax.lax.map(lambda ki: program_read(v, r, ki), k))(variables, ranges, keys)
    log(f"{name}: programmed {n} chips")

    def over_chips(how, chunk=None):
        def fn(v, r, s, k, i, m):
            one = lambda sk: apply(v, r, *sk, i, m)  # noqa: E731
            return jax.vmap(one)((s, k)) if how == "vmap" else jax.lax.map(one, (s, k), batch_size=chunk)

        return fn

    for label, fn in {
        "vmap": over_chips("vmap"),
        "lax.map": over_chips("map"),
        f"lax.map in chunks of {args.chunk} (vmap inside)": over_chips("map", args.chunk),
    }.items():
        add(f"analog forward, {n} chips, {label}", fn, variables, ranges, states, keys, ids, mask, chips=n)
    single = jax.jit(apply)
    # Each chip's state is sliced out of the stack when its turn comes (a copy of one
    # chip, ~1 % of its forward): a list of all n sliced states would double the
    # chip memory, which for roberta-base helped the kernel's OOM killer.
    take = jax.jit(lambda s, i: jax.tree.map(lambda a: a[i], s))
    loop = f"analog forward, {n} chips, Python loop"
    programs[loop] = lambda: jax.block_until_ready(
        [single(variables, ranges, take(states, i), keys[i], ids, mask) for i in range(n)]
    )
    programs[loop]()
    per[loop], info[loop] = n, (0.0, None)
    log(f"{name}: warmed up the Python loop")
    lightning = "aihwkit-lightning analog forward (torch)"
    if args.lightning:
        thunk = lightning_forward(name, args.batch, args.length)
        if thunk is None:
            failed.append(("aihwkit-lightning", "not installed"))
        else:
            programs[lightning], per[lightning], info[lightning] = thunk, 1, (None, None)
            log(f"{name}: aihwkit-lightning model set up and warmed up")

    log(f"{name}: timing {len(programs)} programs in {args.repeats} interleaved rounds")
    seconds = interleaved(programs, args.repeats)
    t_float = seconds["float forward (JAX)"]
    rows = []
    for label, t in seconds.items():
        c, mib = info[label]
        t_chip = t / per[label]
        rate = "-" if label.startswith("program") else f"{tokens / t_chip:,.0f}"
        cells = [name, label, "-" if c is None else f"{c:.1f}", f"{t * 1e3:.0f}", rate, f"{t_chip / t_float:.2f}",
                 "" if mib is None else f"{mib:,.0f}"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    rows += [f"| {name} | {label} | failed: {reason} | | | | |" for label, reason in failed]
    if lightning in seconds:
        ratio = seconds[lightning] / seconds["analog forward, 1 chip (steady state)"]
        rows.append(f"| {name} | **aimc_jax / lightning throughput** | | | **{ratio:.2f}x** | | |")
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
        f"median of {args.repeats} interleaved rounds"
    )
    print("\n| model | what | compile s | ms per batch | tokens/s | x float | XLA memory MiB |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for line in bench(name.strip(), args):
            print(line, flush=True)


if __name__ == "__main__":
    main()
