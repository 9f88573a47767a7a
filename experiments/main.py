"""Main job: the real all-MiniLM-L6-v2 fine-tuned on real SST-2: FP, naive ranges and PT-optimised ranges.

    python experiments/main.py [--train 4000] [--dev 500] [--seeds 3] [--pt-steps 40] [--glue-dir DIR]

Fine-tunes all-MiniLM-L6-v2 on a seeded subset of SST-2's training sentences (one
epoch; cached in ~/.cache/aimc_jax/finetuned and reused on later runs), then scores a
seeded subset of the dev sentences with the float model and with analog chips
(default `TileConfig`) read at 1 s, 1 h, 1 day and 1 year, one fresh chip per seed,
with two sets of ranges: naive (gamma = column abs-max, beta from 256 training
sentences) and PT-optimised (the paper's post-training optimisation of gamma and
beta: task loss on those 256 training sentences, Adam on log ranges with a cosine
schedule, a fresh chip and a drift time drawn from the four per step). Seed k is
the same chip in both conditions, so PT - naive is a paired difference. GLUE data: --glue-dir, else
$AIMC_GLUE_DIR, else ../shared/data/glue; without any, the Rotten Tomatoes snippets
shipped in the vaderSentiment 3.3.2 sdist (fetched with pip). Writes
experiments/results/main.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# transformers (configs and tokenizers only) otherwise advises "PyTorch was not found" when torch is absent
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np

import aimc_jax as aj
from aimc_jax import pt
from aimc_jax.data import encode, extract_rotten_tomatoes, rotten_tomatoes_splits, task_splits
from aimc_jax.data._rotten import SDIST
from aimc_jax.evaluation import (
    comparison_table,
    evaluate_analog,
    evaluate_float,
    fp_rows,
    mc_rows,
    run_metadata,
    write_results,
)
from aimc_jax.training import FinetuneConfig, glue_model

TIMES = (1.0, 3600.0, 86400.0, 365 * 86400.0)
OUT = Path(__file__).resolve().parent / "results" / "main"


def fallback_splits():
    """Rotten Tomatoes snippets, fetched once (pip download of the vaderSentiment 3.3.2 sdist) when absent."""
    try:
        return rotten_tomatoes_splits()
    except FileNotFoundError:
        with tempfile.TemporaryDirectory() as d:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", SDIST, "-d", d]
            subprocess.run(cmd, check=True)
            (sdist,) = Path(d).glob("vaderSentiment-*.tar.gz")
            extract_rotten_tomatoes(sdist)
        return rotten_tomatoes_splits()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue-dir")
    parser.add_argument("--train", type=int, default=4000, help="training sentences for fine-tuning (1 epoch)")
    parser.add_argument("--dev", type=int, default=500, help="dev sentences scored (seeded subset)")
    parser.add_argument("--seeds", type=int, default=3, help="analog chips (Monte-Carlo seeds)")
    parser.add_argument("--calib", type=int, default=256, help="training sentences for calibration and PT")
    parser.add_argument("--pt-steps", type=int, default=40, help="PT steps (0: naive ranges only)")
    parser.add_argument("--pt-lr", type=float, default=0.05, help="peak Adam rate on log ranges (cosine decay)")
    parser.add_argument("--pt-batch", type=int, default=32)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    start = time.time()
    aj.enable_compilation_cache()
    try:
        splits, source = task_splits("SST-2", args.glue_dir), "SST-2 (GLUE)"
    except FileNotFoundError as e:
        print(f"{e}\n-> falling back to the Rotten Tomatoes snippets of the vaderSentiment 3.3.2 sdist")
        splits, source = fallback_splits(), "Rotten Tomatoes (vaderSentiment 3.3.2 sdist)"
    config = FinetuneConfig(epochs=1.0, max_train=args.train)
    gm = glue_model("SST-2", config=config, splits=splits)
    dev = gm.eval
    if args.dev < len(dev):
        dev = dev.subset(np.sort(np.random.default_rng(0).choice(len(dev), args.dev, replace=False)))
    batches = gm.batches(dev, 64)
    fp = evaluate_float(gm.module, gm.variables, batches, dev)
    tile = aj.TileConfig()
    calib = gm.calibration_split(args.calib)
    calibration = aj.collect_layer_inputs(gm.module, gm.variables, gm.batches(calib))
    naive = aj.init_model_ranges(gm.variables, tile, calibration=calibration)
    conditions = {"naive ranges": naive}
    pt_seconds = None
    if args.pt_steps:
        # one padded length for every PT batch: the PT step compiles once
        batches_pt = pt.fixed_length_batches(encode(calib, gm.tokenizer, gm.max_length), args.pt_batch)
        pt_start = time.time()
        result = pt.optimize_task_ranges(
            gm.module, gm.variables, naive, batches_pt, tile, "SST-2", times=TIMES, steps=args.pt_steps,
            learning_rate=args.pt_lr, checked=True,  # the first batch in the checked mode (aj.checked)
        )  # fmt: skip
        pt_seconds = time.time() - pt_start
        conditions["PT ranges"] = result.ranges
        print(
            f"PT: {args.pt_steps} steps in {pt_seconds:.0f} s, loss {result.losses[:5].mean():.3f} -> "
            f"{result.losses[-5:].mean():.3f} (first / last 5 steps)"
        )
    results = {
        name: evaluate_analog(
            gm.module, gm.variables, r, batches, dev, tile, times=TIMES, seeds=args.seeds, checked=True
        )
        for name, r in conditions.items()
    }

    print(
        f"\nall-MiniLM-L6-v2 fine-tuned on {gm.info['train_examples']} {source} training sentences "
        f"(1 epoch, {gm.info['steps']} steps), scored on {len(dev)} dev sentences; "
        f"{aj.count_tiles(gm.variables, tile)} crossbars, {args.seeds} chips (seeds 0..{args.seeds - 1}), "
        f"the same chips for both sets of ranges"
    )
    for line in comparison_table(fp, results, "accuracy"):
        print(line)
    rows = fp_rows("SST-2", fp)
    for name, mc in results.items():
        rows += mc_rows(mc, f"analog, {name}")
    meta = run_metadata(
        seeds=list(range(args.seeds)),
        data=f"{source}: {gm.info['train_examples']} train, {len(dev)} dev (seeded subsets), "
        f"{len(calib)} training sentences for calibration and PT",
        finetune=config,
        config=tile,
        pt=None
        if not args.pt_steps
        else pt.recipe_record(
            "SST-2", TIMES, steps=args.pt_steps, learning_rate=args.pt_lr, batch_size=args.pt_batch, seconds=pt_seconds
        ),
        seconds=round(time.time() - start),
    )
    write_results(args.out, rows, meta, title="Main job: FP vs analog (naive and PT ranges), all-MiniLM-L6-v2 on SST-2")
    print(f"\n(total {time.time() - start:.0f} s; results in {args.out}.md)")


if __name__ == "__main__":
    main()
