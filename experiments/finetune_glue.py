"""Fine-tune the real all-MiniLM-L6-v2 on every GLUE task available offline (resumable).

    python experiments/finetune_glue.py [--tasks WNLI SST-2 ...] [--glue-dir DIR]

Each task's model is cached under ~/.cache/aimc_jax/finetuned (or $AIMC_JAX_CACHE);
an interrupted run resumes from its last checkpoint, a finished one is loaded.
Prints the FP score of each fine-tuned model on its eval split.
"""

from __future__ import annotations

import argparse
import logging
import time

import aimc_jax as aj
from aimc_jax.training import glue_model

TASKS = ("WNLI", "RTE", "MRPC", "STS-B", "CoLA", "QNLI", "SST-2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--glue-dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    aj.enable_compilation_cache()
    for task in args.tasks:
        start = time.time()
        gm = glue_model(task, glue_dir=args.glue_dir)
        fp = ", ".join(f"{k} {v:.4f}" for k, v in gm.info["fp_eval"].items())
        print(
            f"{task}: {fp} | {gm.info['train_examples']} train examples, {gm.info['steps']} steps, "
            f"final loss {gm.info['final_loss']:.4f} ({time.time() - start:.0f} s) {gm.info.get('note', '')}",
            flush=True,
        )


if __name__ == "__main__":
    main()
