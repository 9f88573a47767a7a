"""Cost of PT range optimisation and HWA training over float fine-tuning, side by side (issue "Speed and scale II").

    python experiments/bench_pt.py [--models minilm,roberta-base] [--shapes 32x128,16x32] [--steps 6]
                                   [--repeats 3] [--out experiments/results/bench_pt.md]
                                   [--skip-compile] [--skip-memory] [--cold-only]

For each model (all-MiniLM-L6-v2 with its real weights; a roberta-base-sized encoder
with random weights; both with a 2-class head) and batch shape B x L (random token
ids, full mask, random labels), on the default `TileConfig` at t = 1 h, measures:
the float fine-tuning step (dropout on, backward, AdamW on all parameters, as
`training.finetune` steps); the PT step through the public path
(`pt.optimize_ranges` on `pt.task_objective`, SST-2 loss, Adam 0.05), timed from
its callback (first step = compile + one step; steady = median of the later
intervals); the PT step's parts, each jitted: programming + read-out of a fresh
chip, the analog forward on a read-out chip, forward + backward w.r.t. the ranges
(programming included; backward = that minus the other two); the full and reduced
HWA training steps (HWADense layers, learnable DAC ranges, AdamW + range optimiser,
weight clipping, as `hwa_glue_model` trains). Steady-state figures are medians of
interleaved rounds (`bench_model.interleaved`). At the first shape, each in a fresh
subprocess without the compilation cache: `jit(fn).lower(...).compile()` seconds of
the analog forward, PT step, float forward and float train step, and peak resident
memory of an 8-chip Monte-Carlo evaluation (`map_chips(strategy="loop")`) and of a
few PT steps. Prints one Markdown table per model with the issue's goals and
writes them to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bench_model import compiled, interleaved, load, log
from flax import traverse_util

import aimc_jax as aj
from aimc_jax import pt
from aimc_jax.data import task_spec
from aimc_jax.models import Encoder
from aimc_jax.pt._optimize import _pt_step
from aimc_jax.training import (
    HWAConfig,
    add_input_ranges,
    clip_weights,
    hwa_dense_factory,
    make_train_step,
    range_optimizer,
    task_loss,
)

T = 3600.0  # drift time of every analog program, seconds
TASK = "SST-2"
PT_LR = 0.05
MEMORY_PT_STEPS = 3
REMAT: set[str] = set()  # "model" or "model@shape" whose PT objective runs with remat=True (--remat)
SCAN_TRAIN: set[str] = set()  # models whose float/HWA train steps also run with scanned layers (--scan-train)
REMAT_HWA: set[str] = set()  # "model" or "model@shape" whose scanned HWA steps recompute layers (--remat-hwa)
CHIPS = 8
RANGE_PARAM = "input_range"  # the name HWADense gives its learnable DAC range (aimc_jax.training._hwa)
COMPILE_KINDS = ("compile-analog-forward", "compile-pt-step", "compile-float-forward", "compile-float-step")
MEMORY_KINDS = ("memory-mc", "memory-pt")

# (row label, key, unit) of each model's table, in order
ROWS = [
    ("float step s", "float", "s"),
    ("float step s, layers scanned", "float_scan", "s"),
    ("PT step s", "pt", "s"),
    ("PT/float", "pt_ratio", "x"),
    ("PT first step s (compile + 1 step)", "pt_first", "s"),
    ("program+read s", "program_read", "s"),
    ("analog forward s", "analog_forward", "s"),
    ("forward+backward w.r.t. ranges s", "fwd_bwd", "s"),
    ("PT step - program+read - analog forward s", "backward", "s"),
    ("HWA full step s", "hwa_full", "s"),
    ("HWA reduced step s", "hwa_reduced", "s"),
    ("HWA/float (same layer layout)", "hwa_ratio", "x"),
    ("HWA reduced/float (same layer layout)", "hwa_reduced_ratio", "x"),
    ("compile analog forward s", "compile-analog-forward", "s"),
    ("compile PT step s", "compile-pt-step", "s"),
    ("compile float forward s", "compile-float-forward", "s"),
    ("compile float step s", "compile-float-step", "s"),
    ("peak RSS MC 8 chips GiB", "memory-mc", "GiB"),
    ("peak RSS PT step GiB", "memory-pt", "GiB"),
]


def goal(key: str, model: str, shape: str) -> float | None:
    """The issue's upper bound on a figure (None: no goal for this model/shape)."""
    if key == "pt_ratio":
        return {"32x128": 2.5, "16x32": 4.0}.get(shape)
    if key in ("hwa_ratio", "hwa_reduced_ratio"):
        return 3.0
    if key == "compile-analog-forward":
        return {"minilm": 10.0, "roberta-base": 60.0}.get(model)
    if key == "compile-pt-step":
        return {"minilm": 20.0, "roberta-base": 120.0}.get(model)
    if key in MEMORY_KINDS:
        return 8.0
    return None


def goal_text(key: str, model: str) -> str:
    if key == "pt_ratio":
        return "<= 2.5x at 32x128, <= 4x at 16x32"
    bound = goal(key, model, "")
    if bound is None:
        return ""
    unit = {"s": " s", "x": "x", "GiB": " GiB"}[dict((k, u) for _, k, u in ROWS)[key]]
    return f"<= {bound:g}{unit}"


def parse_shape(text: str) -> tuple[int, int]:
    b, l = text.lower().split("x")
    return int(b), int(l)


def make_batch(batch: int, length: int, vocab: int, seed: int = 1) -> dict:
    """A labelled batch as `aimc_jax.data.make_batches` makes them: random ids in [5, vocab), no padding."""
    rng = np.random.default_rng(seed)
    return {
        "input_ids": jnp.asarray(rng.integers(5, vocab, (batch, length)), jnp.int32),
        "attention_mask": jnp.ones((batch, length), jnp.int32),
        "token_type_ids": jnp.zeros((batch, length), jnp.int32),
        "labels": jnp.asarray(rng.integers(0, 2, batch), jnp.int32),
        "weight": jnp.ones((batch,), jnp.float32),
    }


def setup(name: str, shape: str):
    """(module, variables, tile config, naive ranges, batch) of a model with a 2-class head."""
    module, variables = load(name, num_labels=2)
    cfg = aj.TileConfig()
    batch = make_batch(*parse_shape(shape), module.config.vocab_size)
    return module, variables, cfg, aj.init_model_ranges(variables, cfg), batch


def decay_mask(params):
    """AdamW's weight-decay mask as `training.finetune` uses it: no decay on biases and LayerNorm."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {k: not (k[-1] == "bias" or any("LayerNorm" in p or "layer_norm" in p for p in k)) for k in flat}
    )


def adamw(learning_rate: float) -> optax.GradientTransformation:
    # finetune's warm-up/decay schedule is replaced by a constant rate (the same cost per step)
    return optax.adamw(learning_rate, weight_decay=0.01, mask=decay_mask)


def train_step(module, variables, tx, project=None, scan: bool = False, remat: bool = False):
    """`training.finetune`'s step (`training.make_train_step`) on the SST-2 loss."""
    return make_train_step(module, variables, task_spec(TASK), tx, project, scan_layers=scan, remat_layers=remat)


def float_program(module, variables, scan: bool = False):
    """(float train step, its arguments but the batch and key)."""
    tx = adamw(5e-5)
    return train_step(module, variables, tx, scan=scan), (variables["params"], tx.init(variables["params"]))


def uses_remat(name: str, shape: str) -> bool:
    return name in REMAT or f"{name}@{shape}" in REMAT


def hwa_program(module, variables, ranges, cfg, mode: str, scan: bool = False, remat: bool = False):
    """(HWA train step, its arguments but the batch and key), built as `hwa_glue_model` builds it.

    Full mode: DAC ranges from `ranges` (here the naive 3.0, not the calibrated |mean| + 3 std) as
    trainable params with their own optimiser, kernels clipped before and after every step.
    """
    hwa = HWAConfig(mode=mode)
    hwa_module = Encoder(module.config, dense=hwa_dense_factory(hwa, cfg))
    if mode == "full":
        variables = add_input_ranges({**variables, "params": clip_weights(variables["params"], hwa.clip_sigma)}, ranges)

    def label(params):
        flat = traverse_util.flatten_dict(params)
        return traverse_util.unflatten_dict({k: "ranges" if k[-1] == RANGE_PARAM else "weights" for k in flat})

    tx = optax.multi_transform({"weights": adamw(2e-5), "ranges": range_optimizer(hwa, 1000)}, label)
    project = (lambda p: clip_weights(p, hwa.clip_sigma)) if mode == "full" else None
    params = variables["params"]
    return train_step(hwa_module, variables, tx, project, scan=scan, remat=remat), (params, tx.init(params))


def pt_step_program(module, variables, cfg, ranges, remat: bool = False):
    """(PT step, its arguments but batch and key): the jitted step of `optimize_ranges` (`pt._optimize._pt_step`)."""
    objective = pt.task_objective(module, variables, cfg, TASK, t=T, remat=remat)
    theta = pt.split_ranges(ranges, ("column", "input"), tuple(ranges))
    optimizer = optax.adam(PT_LR)

    def step(theta, opt_state, ranges, frozen, batch, key):  # learning rate: part of `optimizer` (not injected)
        return _pt_step(
            theta, opt_state, ranges, batch, key, frozen, jnp.float32(PT_LR), theta, fn=objective.fn, tx=optimizer
        )

    return step, (theta, optimizer.init(theta), ranges, objective.frozen)


def run_pt(module, variables, cfg, ranges, batch, steps: int, remat: bool = False) -> tuple[float, float]:
    """(first step s, median later step s) of `optimize_ranges`, from its callback's timestamps.

    A new `optax.adam(...)` object per call: `optimize_ranges` compiles its step once per transformation
    object, so the first step includes the compile every time.
    """
    stamps = []
    objective = pt.task_objective(module, variables, cfg, TASK, t=T, remat=remat)
    start = time.perf_counter()
    pt.optimize_ranges(
        objective,
        ranges,
        [batch],
        optax.adam(PT_LR),
        steps=steps,
        key=jax.random.key(0),
        progress=False,
        callback=lambda step, loss, r: stamps.append(time.perf_counter()),
    )
    steady = float(np.median(np.diff(stamps))) if len(stamps) > 1 else float("nan")
    return stamps[0] - start, steady


def peak_gib() -> float:
    """Peak resident memory of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def child(kind: str, args) -> dict:
    """One cold-cache measurement in this (fresh) process; printed as JSON on the last stdout line."""
    module, variables, cfg, ranges, batch = setup(args.models, args.shapes)
    loaded = peak_gib()
    key = jax.random.key(0)
    if kind in COMPILE_KINDS:
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        if kind == "compile-analog-forward":
            fn = lambda v, r, i, m, ty, k: aj.analog_forward(module, v, r, i, m, cfg, t=T, key=k, token_type_ids=ty)  # noqa: E731
            fn_args = (variables, ranges, ids, mask, types, key)
        elif kind == "compile-pt-step":
            fn, fixed = pt_step_program(module, variables, cfg, ranges, uses_remat(args.models, args.shapes))
            fn_args = (*fixed, batch, key)
        elif kind == "compile-float-forward":
            fn = lambda v, i, m, ty: module.apply(v, i, m, ty)  # noqa: E731
            fn_args = (variables, ids, mask, types)
        else:
            fn, fixed = float_program(module, variables)
            fn_args = (*fixed, batch, key)
        start = time.perf_counter()
        jax.jit(fn).lower(*fn_args).compile()
        out = {"value": time.perf_counter() - start}
    elif kind == "memory-mc":

        def chip(k):  # programmed, read at T and run on the batch
            return aj.analog_forward(
                module, variables, ranges, batch["input_ids"], batch["attention_mask"], cfg,
                t=T, key=k, token_type_ids=batch["token_type_ids"],
            )  # fmt: skip

        jax.block_until_ready(aj.map_chips(chip, jax.random.split(key, CHIPS), strategy="loop"))
        out = {"value": peak_gib()}
    elif kind == "memory-pt":
        run_pt(module, variables, cfg, ranges, batch, MEMORY_PT_STEPS, uses_remat(args.models, args.shapes))
        out = {"value": peak_gib()}
    else:
        raise ValueError(f"unknown --child {kind!r}")
    return {**out, "loaded_gib": loaded}


def run_child(kind: str, name: str, shape: str) -> dict | str:
    """Run `kind` in a fresh subprocess with no persistent compilation cache; its result or why it failed."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--models", name, "--shapes", shape]
    cmd += ["--remat", ",".join(REMAT), "--scan-train", ",".join(SCAN_TRAIN)]
    log(f"{name} {shape}: fresh process for {kind}")
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=False)
    if proc.returncode != 0:
        why = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit {proc.returncode}"
        log(f"{name} {shape}: {kind} failed: {why}")
        return f"failed: {why}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"{name} {shape}: {kind} = {result['value']:.2f} ({time.perf_counter() - start:.0f} s in all)")
    return result


def bench(name: str, shape: str, args) -> dict:
    """The in-process figures of one model and batch shape: {key: seconds or ratio, or a failure string}."""
    module, variables, cfg, ranges, batch = setup(name, shape)
    key = jax.random.key(1)
    log(f"{name} {shape}: loaded; PT through optimize_ranges, {args.steps} steps")
    out = {}
    try:
        out["pt_first"], out["pt"] = run_pt(module, variables, cfg, ranges, batch, args.steps, uses_remat(name, shape))
    except jax.errors.JaxRuntimeError as e:  # e.g. RESOURCE_EXHAUSTED: keep the other figures
        log(f"{name} {shape}: PT failed: {str(e).splitlines()[0][:200]}")
        out["pt_first"] = out["pt"] = "failed: " + ("out of memory" if "RESOURCE_EXHAUSTED" in str(e) else "error")
    if isinstance(out["pt"], float):
        log(f"{name} {shape}: PT first step {out['pt_first']:.1f} s, later steps {out['pt']:.3f} s")

    spec = task_spec(TASK)

    def program_read(v, r, k):
        return aj.fresh_chip(v, r, cfg, T, key=k)

    def apply(v, r, s, k, b):
        return aj.analog_apply(
            module, v, r, s, b["input_ids"], b["attention_mask"], cfg, key=k, token_type_ids=b["token_type_ids"]
        )

    def fwd_bwd(r, v, b, k):
        def loss(r):
            logits = aj.analog_forward(
                module, v, r, b["input_ids"], b["attention_mask"], cfg, t=T, key=k, token_type_ids=b["token_type_ids"]
            )
            return task_loss(spec, logits, b["labels"], b["weight"])

        return jax.value_and_grad(loss)(r)

    state = jax.jit(program_read)(variables, ranges, key)
    step, fixed = float_program(module, variables)
    programs = {
        "float": (step, *fixed, batch, key),
        "program_read": (program_read, variables, ranges, key),
        "analog_forward": (apply, variables, ranges, state, key, batch),
        "fwd_bwd": (fwd_bwd, ranges, variables, batch, key),
    }
    scan = name in SCAN_TRAIN
    if scan:  # the same step with the layers scanned: what the HWA steps are compared with
        step, fixed = float_program(module, variables, scan=True)
        programs["float_scan"] = (step, *fixed, batch, key)
    for mode in ("full", "reduced"):
        remat = scan and (name in REMAT_HWA or f"{name}@{shape}" in REMAT_HWA)
        step, fixed = hwa_program(module, variables, ranges, cfg, mode, scan=scan, remat=remat)
        programs[f"hwa_{mode}"] = (step, *fixed, batch, key)
    thunks = {}
    for label, (fn, *fn_args) in programs.items():
        try:
            thunks[label], c, _ = compiled(fn, *fn_args)
        except jax.errors.JaxRuntimeError as err:
            out[label] = "failed: " + str(err).splitlines()[0][:80]
            log(f"{name} {shape}: {label} failed")
            continue
        log(f"{name} {shape}: compiled and warmed up {label} in {c:.0f} s")
    del programs, state
    log(f"{name} {shape}: timing {len(thunks)} programs in {args.repeats} interleaved rounds")
    out.update(interleaved(thunks, args.repeats))

    def ratio(a, b):
        ok = isinstance(out.get(a), float) and isinstance(out.get(b), float)
        return out[a] / out[b] if ok else "-"

    out["pt_ratio"] = ratio("pt", "float")
    base = "float_scan" if scan else "float"
    out["hwa_ratio"] = ratio("hwa_full", base)
    out["hwa_reduced_ratio"] = ratio("hwa_reduced", base)
    parts = [out.get(k) for k in ("pt", "program_read", "analog_forward")]
    out["backward"] = parts[0] - parts[1] - parts[2] if all(isinstance(p, float) for p in parts) else "-"
    return out


def cell(value, unit: str) -> str:
    if not isinstance(value, float):
        return "-" if value is None else str(value)
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.2f}" if unit == "GiB" or abs(value) >= 10 else f"{value:.3g}"


def table(name: str, results: dict) -> list[str]:
    """Markdown rows: one column per shape, then the goal and whether each shape met it."""
    shapes = list(results)
    lines = [f"| {name} | " + " | ".join(shapes) + " | goal | met? |", "|---" * (len(shapes) + 3) + "|"]
    for label, key, unit in ROWS:
        values = [results[s].get(key) for s in shapes]
        verdicts = []
        for s, v in zip(shapes, values, strict=True):
            bound = goal(key, name, s)
            if bound is not None and isinstance(v, float):
                verdicts.append((s, "met" if v <= bound else "**missed**"))
        met = "; ".join(f"{s}: {v}" for s, v in verdicts) if len(verdicts) > 1 else (verdicts[0][1] if verdicts else "")
        cells = [label, *(cell(v, unit) for v in values), goal_text(key, name), met]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


NOTES = """\
- Ratios are of figures measured in the same run. Steady-state figures (float step, program+read, analog forward,
  forward+backward, HWA steps) are medians of {repeats} interleaved rounds of programs compiled beforehand; the PT
  step is the median interval between `optimize_ranges`' callbacks over {steps} steps (a fresh chip per step, loss
  fetched to the host each step), its first step the time from the call to the first callback (compile included).
- Breakdown: program+read = `fresh_chip(..., 3600 s)` (what `analog_forward` and so the PT step use); analog
  forward = `analog_apply` on a read-out state; forward+backward = `value_and_grad` of the SST-2 loss of
  `analog_forward` w.r.t. the whole ranges dict (programming included), jitted on its own; PT step - program+read
  - analog forward = what the backward pass and the optax update cost inside the step. The standalone
  forward+backward measures slower than the whole PT step (not investigated: a different program around the same
  loss; the PT step is the figure that counts).
- Float and HWA steps are `training.make_train_step` (`training.finetune`'s step) built with the public pieces:
  dropout on, AdamW (weight decay 0.01, not on biases/LayerNorm) at a constant rate instead of the warm-up/decay
  schedule; HWA: `Encoder(config, dense=hwa_dense_factory(HWAConfig(mode),
  TileConfig()))`; full mode adds `add_input_ranges` (here beta = the naive 3.0 of `init_model_ranges`, not the
  calibrated |mean| + 3 std), `range_optimizer` on the DAC ranges via `optax.multi_transform`, and
  `clip_weights` before training and after every step; reduced mode: weight noise only, no projection.
- Compile times and peak memory were measured at the first shape ({first}), each in a fresh subprocess without the
  persistent compilation cache: compile = `jax.jit(fn).lower(*args).compile()` (tracing included) of
  `analog_forward` (program + read + apply), the PT step (the jitted step `optimize_ranges` runs, with
  `optax.adam`), the float forward and the float train step. Peak RSS =
  `ru_maxrss` at the child's end (model loading and the JAX runtime included; on CPU the device buffers are host
  memory): {chips} chips through `map_chips(analog_forward, strategy="loop")`, and {pt_steps} `optimize_ranges` steps.
  Peak RSS after loading the model, in the same children: {loaded}.
"""


def header(args) -> list[str]:
    dev = jax.devices()[0]
    return [
        "# bench_pt: PT and HWA training steps vs the float fine-tuning step",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `python {shlex.join(sys.argv)}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, jax {jax.__version__}, backend "
        f"{jax.default_backend()} ({len(jax.devices())} x {dev.device_kind})",
        f"- settings: default `TileConfig`, drift time {T:.0f} s, {TASK} loss, PT Adam {PT_LR} on log ranges "
        f"(column + input), {args.steps} PT steps, {args.repeats} interleaved rounds; PT objective with "
        f"`remat=True` (layers recomputed in the backward pass) for: {', '.join(sorted(args.remat)) or 'none'}; "
        f"float and HWA train steps also with scanned layers for: {', '.join(sorted(args.scan_train)) or 'none'}"
        f" (HWA steps with remat for: {', '.join(sorted(REMAT_HWA)) or 'none'})",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,roberta-base")
    parser.add_argument("--shapes", default="32x128,16x32", help="batch x length, comma-separated")
    parser.add_argument("--steps", type=int, default=6, help="PT steps timed through optimize_ranges (>= 2)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the steady-state programs")
    parser.add_argument("--out", default="experiments/results/bench_pt.md")
    parser.add_argument("--skip-compile", action="store_true", help="no cold-cache compile times")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory subprocesses")
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="only the compile-time and peak-memory subprocesses (at the first shape), no steady-state timings",
    )
    parser.add_argument(
        "--remat",
        default="roberta-base",
        help="models (or model@shape) whose PT objective recomputes layers (remat=True), comma-separated",
    )
    parser.add_argument(
        "--scan-train",
        default="roberta-base",
        help="models whose float and HWA train steps also run with the layers scanned (make_train_step(scan_layers="
        "True)); their HWA steps are compared with the scanned float step",
    )
    parser.add_argument(
        "--remat-hwa",
        default="roberta-base@32x128",
        help="models (or model@shape) whose scanned HWA steps recompute each layer in the backward pass "
        "(compared with the scanned float step without it)",
    )
    parser.add_argument("--child", choices=COMPILE_KINDS + MEMORY_KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.remat = {m.strip() for m in args.remat.split(",") if m.strip()}
    REMAT.update(args.remat)
    args.scan_train = {m.strip() for m in args.scan_train.split(",") if m.strip()}
    SCAN_TRAIN.update(args.scan_train)
    REMAT_HWA.update(m.strip() for m in args.remat_hwa.split(",") if m.strip())
    if args.child:
        print(json.dumps(child(args.child, args)), flush=True)
        return
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the steady PT step is the median of the later step intervals)")
    models = [m.strip() for m in args.models.split(",")]
    shapes = [s.strip() for s in args.shapes.split(",")]
    for s in shapes:
        parse_shape(s)
    if args.cold_only and args.skip_compile and args.skip_memory:
        parser.error("--cold-only with both --skip-compile and --skip-memory measures nothing")
    if args.cold_only:
        shapes = shapes[:1]
    kinds = (() if args.skip_compile else COMPILE_KINDS) + (() if args.skip_memory else MEMORY_KINDS)
    lines = header(args)
    loaded = []
    for name in models:
        # the subprocesses first, while this process holds no model
        results = {s: {} for s in shapes}
        for kind in kinds:
            r = run_child(kind, name, shapes[0])
            results[shapes[0]][kind] = r["value"] if isinstance(r, dict) else r
            if isinstance(r, dict):
                loaded.append(f"{name} {kind} {r['loaded_gib']:.2f} GiB")
        for s in () if args.cold_only else shapes:
            results[s].update(bench(name, s, args))
        rows = table(name, results)
        print("\n" + "\n".join(rows), flush=True)
        lines += ["", f"## {name}", "", *rows]
    notes = NOTES.format(
        repeats=args.repeats, steps=args.steps, first=shapes[0], chips=CHIPS, pt_steps=MEMORY_PT_STEPS,
        loaded=", ".join(loaded) or "-",
    )  # fmt: skip
    print("\n" + notes)
    lines += ["", "Notes:", "", notes]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
