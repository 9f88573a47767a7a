"""Baseline: FP vs analog (default TileConfig, naive ranges) on every GLUE task available offline.

    python experiments/baseline.py [--tasks CoLA SST-2 ...] [--seeds 10] [--glue-dir DIR]

For each task: the fine-tuned all-MiniLM-L6-v2 (experiments/finetune_glue.py's cached
model; fine-tuned here if absent), its FP score on the eval split, and the analog score
of `--seeds` chips (seed k = chip k in every condition) read at 1 s, 1 h, 1 day and
1 year. Naive ranges: column abs-max for gamma; DAC range beta = min(max|x|, 3 std(x))
per input block from `--calib` training examples. Every finished (task, seed chunk)
is cached under ~/.cache/aimc_jax/results/baseline, so an interrupted run resumes.
Writes experiments/results/baseline.{json,md,png}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import aimc_jax as aj
from aimc_jax._cache import atomic_write
from aimc_jax.evaluation import MCResult, evaluate_analog, format_time, fp_rows, mc_rows, run_metadata, write_results
from aimc_jax.training import glue_model

TASKS = ("CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI", "QNLI")  # QNLI (largest dev) last
TIMES = (1.0, 3600.0, 86400.0, 365 * 86400.0)
OUT = Path(__file__).resolve().parent / "results" / "baseline"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=5, help="seeds per cached cell")
    parser.add_argument("--calib", type=int, default=256, help="training examples for the DAC ranges")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--strategy", default="auto", choices=("auto", "vmap", "map", "loop"))
    parser.add_argument("--glue-dir")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    aj.enable_compilation_cache()
    config = aj.TileConfig()
    cells = aj.cache_dir("results", "baseline")
    rows, notes = [], {}
    for task in args.tasks:
        gm = glue_model(task, glue_dir=args.glue_dir)
        rows += fp_rows(task, gm.info["fp_eval"])
        if gm.eval.note:
            notes[task] = gm.eval.note
        batches = gm.batches("eval", args.batch)
        calibration = aj.collect_layer_inputs(gm.module, gm.variables, gm.batches(gm.calibration_split(args.calib)))
        ranges = aj.init_model_ranges(gm.variables, config, calibration=calibration)
        ident = {
            "model": gm.checkpoint_dir.name,
            "config": repr(config),
            "noise": aj.NOISE_VERSION,
            "times": TIMES,
            "calib": args.calib,
            "batch": args.batch,
        }
        tag = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
        parts = []
        for lo in range(0, args.seeds, args.chunk):
            seeds = list(range(lo, min(args.seeds, lo + args.chunk)))
            path = cells / f"{task}-{tag}-seeds{seeds[0]}-{seeds[-1]}.json"
            if path.is_file():
                parts.append(MCResult.from_dict(json.loads(path.read_text())))
                continue
            start = time.time()
            mc = evaluate_analog(
                gm.module, gm.variables, ranges, batches, gm.eval, config, times=TIMES, seeds=seeds,
                strategy=args.strategy, desc=f"{task} seeds {seeds[0]}-{seeds[-1]}", checked=True,
            )  # fmt: skip
            atomic_write(path, {**mc.to_dict(), "seconds": time.time() - start})
            parts.append(mc)
        mc = MCResult.concat(parts)
        rows += mc_rows(mc, "analog, naive ranges")
        head = gm.eval.task.metrics[0]
        summary = " ".join(f"{format_time(t)} {m:.4f}+/-{s:.4f}" for t, (m, s) in mc.summary()[head].items())
        print(f"{task} {head}: FP {gm.info['fp_eval'][head]:.4f} | analog {summary}", flush=True)
        meta = run_metadata(
            seeds=list(range(args.seeds)),
            times=list(TIMES),
            config=config,
            ranges="gamma: column abs-max per input block; beta: min(max|x|, 3 std x) per input block, "
            f"from {args.calib} seeded training examples",
            model="all-MiniLM-L6-v2 fine-tuned per task (experiments/finetune_glue.py, aimc_jax.training.recipe)",
            notes=notes,
        )
        write_results(args.out, rows, meta, title="FP vs analog (naive ranges), all-MiniLM-L6-v2")


if __name__ == "__main__":
    main()
