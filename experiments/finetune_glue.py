"""Fine-tune the real all-MiniLM-L6-v2 on every GLUE task available offline (resumable).

    python experiments/finetune_glue.py [--tasks WNLI SST-2 ...] [--glue-dir DIR]

Each task's model is cached under ~/.cache/aimc_jax/finetuned (or $AIMC_JAX_CACHE);
an interrupted run resumes from its last checkpoint, a finished one is loaded.
Prints the FP score of each fine-tuned model on its eval split and writes
experiments/results/finetune.{json,md}.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import aimc_jax as aj
from aimc_jax.evaluation import fp_rows, run_metadata, write_results
from aimc_jax.training import glue_model, recipe

TASKS = ("WNLI", "RTE", "MRPC", "STS-B", "CoLA", "QNLI", "SST-2")
OUT = Path(__file__).resolve().parent / "results" / "finetune"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--glue-dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    aj.enable_compilation_cache()
    rows, runs = [], {}
    for task in args.tasks:
        start = time.time()
        gm = glue_model(task, glue_dir=args.glue_dir)
        rows += fp_rows(task, gm.info["fp_eval"])
        runs[task] = {
            "recipe": recipe(task),
            "train_examples": gm.info["train_examples"],
            "steps": gm.info["steps"],
            "final_loss": round(gm.info["final_loss"], 4),
            "training_seconds": round(gm.info["seconds"]),
            "eval": f"{gm.eval.split} ({len(gm.eval)} examples){'; ' + gm.eval.note if gm.eval.note else ''}",
        }
        fp = ", ".join(f"{k} {v:.4f}" for k, v in gm.info["fp_eval"].items())
        print(
            f"{task}: {fp} | {gm.info['train_examples']} train examples, {gm.info['steps']} steps, "
            f"final loss {gm.info['final_loss']:.4f} ({time.time() - start:.0f} s) {gm.info.get('note', '')}",
            flush=True,
        )
    meta = run_metadata(model="all-MiniLM-L6-v2", runs=runs)
    write_results(OUT, rows, meta, title="FP fine-tuning of all-MiniLM-L6-v2 (eval-split scores)", plot=False)


if __name__ == "__main__":
    main()
