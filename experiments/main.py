"""Main job: the real all-MiniLM-L6-v2 fine-tuned on real SST-2, FP vs analog accuracy over drift time.

    python experiments/main.py [--train 4000] [--dev 500] [--seeds 3] [--glue-dir DIR]

Fine-tunes all-MiniLM-L6-v2 on a seeded subset of SST-2's training sentences (one
epoch; cached in ~/.cache/aimc_jax/finetuned and reused on later runs), then scores a
seeded subset of the dev sentences with the float model and with analog chips
(default `TileConfig`, naive ranges calibrated on 256 training sentences) read at
1 s, 1 h, 1 day and 1 year, one fresh chip per seed. GLUE data: --glue-dir, else
$AIMC_GLUE_DIR, else ../shared/data/glue; without any, the Rotten Tomatoes snippets
shipped in the vaderSentiment 3.3.2 sdist (fetched with pip). Writes
experiments/results/main.{json,md,png}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import aimc_jax as aj
from aimc_jax.data import rotten_tomatoes_splits, task_splits
from aimc_jax.evaluation import (
    evaluate_analog,
    evaluate_float,
    format_time,
    fp_rows,
    mc_rows,
    run_metadata,
    write_results,
)
from aimc_jax.training import FinetuneConfig, glue_model

TIMES = (1.0, 3600.0, 86400.0, 365 * 86400.0)
OUT = Path(__file__).resolve().parent / "results" / "main"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue-dir")
    parser.add_argument("--train", type=int, default=4000, help="training sentences for fine-tuning (1 epoch)")
    parser.add_argument("--dev", type=int, default=500, help="dev sentences scored (seeded subset)")
    parser.add_argument("--seeds", type=int, default=3, help="analog chips (Monte-Carlo seeds)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    start = time.time()
    aj.enable_compilation_cache()
    try:
        splits, source = task_splits("SST-2", args.glue_dir), "SST-2 (GLUE)"
    except FileNotFoundError as e:
        print(f"{e}\n-> falling back to the Rotten Tomatoes snippets of the vaderSentiment 3.3.2 sdist")
        splits, source = rotten_tomatoes_splits(), "Rotten Tomatoes (vaderSentiment 3.3.2 sdist)"
    config = FinetuneConfig(epochs=1.0, max_train=args.train)
    gm = glue_model("SST-2", config=config, splits=splits)
    dev = gm.eval
    if args.dev < len(dev):
        dev = dev.subset(np.sort(np.random.default_rng(0).choice(len(dev), args.dev, replace=False)))
    batches = gm.batches(dev, 64)
    fp = evaluate_float(gm.module, gm.variables, batches, dev)
    tile = aj.TileConfig()
    calibration = aj.collect_layer_inputs(gm.module, gm.variables, gm.batches(gm.calibration_split(256)))
    ranges = aj.init_model_ranges(gm.variables, tile, calibration=calibration)
    mc = evaluate_analog(gm.module, gm.variables, ranges, batches, dev, tile, times=TIMES, seeds=args.seeds)

    print(
        f"\nall-MiniLM-L6-v2 fine-tuned on {gm.info['train_examples']} {source} training sentences "
        f"(1 epoch, {gm.info['steps']} steps), scored on {len(dev)} dev sentences; "
        f"{aj.count_tiles(gm.variables, tile)} crossbars, {args.seeds} chips (seeds 0..{args.seeds - 1})"
    )
    print("| model | drift time | accuracy |\n|---|---|---|")
    print(f"| FP | - | {fp['accuracy']:.4f} |")
    for t, (m, s) in mc.summary()["accuracy"].items():
        print(f"| analog, naive ranges | {format_time(t)} | {m:.4f} +/- {s:.4f} |")
    rows = fp_rows("SST-2", fp) + mc_rows(mc, "analog, naive ranges")
    meta = run_metadata(
        seeds=list(range(args.seeds)),
        data=f"{source}: {gm.info['train_examples']} train, {len(dev)} dev (seeded subsets)",
        finetune=config,
        config=tile,
        seconds=round(time.time() - start),
    )
    write_results(args.out, rows, meta, title="Main job: FP vs analog, all-MiniLM-L6-v2 on SST-2")
    print(f"\n(total {time.time() - start:.0f} s; results in {args.out}.md)")


if __name__ == "__main__":
    main()
