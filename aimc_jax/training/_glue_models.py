"""A fine-tuned model per GLUE task, trained once and cached.

    gm = glue_model("SST-2")  # loads the cached fine-tuned MiniLM, or fine-tunes it (resumable)
    gm.module, gm.variables, gm.train, gm.eval, gm.tokenizer, gm.info["fp_eval"]

The cache key is the model directory's name, the task, the fine-tuning config and
the maximum sequence length; checkpoints live in `cache_dir("finetuned", ...)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from aimc_jax._cache import atomic_write, cache_dir
from aimc_jax.data import GlueSplit, encode, make_batches, task_spec, task_splits
from aimc_jax.training._finetune import FinetuneConfig, finetune

__all__ = ["GlueModel", "glue_model", "recipe"]

# Default recipes: BERT-style 3 epochs; SST-2's 67k training sentences are cut to a
# seeded 20k subset for one epoch to keep the CPU cost near the other tasks'.
_RECIPES = {"SST-2": FinetuneConfig(epochs=1.0, max_train=20000)}


def recipe(task: str, **changes) -> FinetuneConfig:
    """The default `FinetuneConfig` for a task (see `_RECIPES`), with `changes` applied."""
    return dataclasses.replace(_RECIPES.get(task_spec(task).name, FinetuneConfig()), **changes)


@dataclasses.dataclass(frozen=True)
class GlueModel:
    """A fine-tuned model with its task data."""

    module: object
    variables: dict
    tokenizer: object
    train: GlueSplit
    eval: GlueSplit
    max_length: int
    info: dict
    checkpoint_dir: Path

    def batches(self, split: str | GlueSplit = "eval", batch_size: int = 64, **kwargs) -> list[dict]:
        """Evaluation batches (sorted by length, padded to buckets) of "train", "eval" or a given split."""
        data = split if isinstance(split, GlueSplit) else {"train": self.train, "eval": self.eval}[split]
        return make_batches(encode(data, self.tokenizer, self.max_length), batch_size, **kwargs)

    def calibration_split(self, n: int = 256, seed: int = 0) -> GlueSplit:
        """A seeded random subset of `n` training examples (calibration data never comes from eval)."""
        idx = np.sort(np.random.default_rng(seed).choice(len(self.train), min(n, len(self.train)), replace=False))
        return self.train.subset(idx, split=f"train[calibration {len(idx)}, seed {seed}]")


def glue_model(
    task: str,
    *,
    model=None,
    config: FinetuneConfig | None = None,
    glue_dir=None,
    splits: tuple[GlueSplit, GlueSplit] | None = None,
    max_length: int = 128,
    progress: bool = True,
) -> GlueModel:
    """Load the cached fine-tuned model for `task`, or fine-tune and cache it.

    Args:
      task: GLUE task name.
      model: local Hugging Face directory or hub name (default: the offline all-MiniLM-L6-v2).
      config: fine-tuning config (default `recipe(task)`).
      glue_dir: GLUE data directory (see `aimc_jax.data.glue_dir`).
      splits: (train, eval) splits to use instead of the GLUE files (e.g.
        `aimc_jax.data.rotten_tomatoes_splits()`); their `note` enters the cache key.
      max_length: maximum tokens per example.
      progress: progress bars.

    Returns:
      `GlueModel`; `info["fp_eval"]` holds the float model's metrics on the eval split
      and `info["note"]` says how the splits were made when not the official files.
    """
    from transformers import AutoTokenizer

    from aimc_jax.evaluation import evaluate_float
    from aimc_jax.models import from_pretrained, minilm_path

    spec = task_spec(task)
    config = config or recipe(spec.name)
    model = str(model or minilm_path())
    train, ev = splits if splits is not None else task_splits(spec, glue_dir)
    ident = {
        "model": Path(model).name,
        "task": spec.name,
        "config": dataclasses.asdict(config),
        "max_length": max_length,
    }
    if splits is not None:
        ident["data"] = f"{train.note} ({len(train)} train, {len(ev)} eval)"
    ident = json.dumps(ident, sort_keys=True)
    tag = hashlib.sha256(ident.encode()).hexdigest()[:10]
    d = cache_dir("finetuned", f"{Path(model).name}-{spec.name}-{tag}")
    atomic_write(d / "identity.json", ident)
    tokenizer = AutoTokenizer.from_pretrained(model)
    module, variables = from_pretrained(model, num_labels=spec.num_labels, seed=config.seed)
    variables, info = finetune(
        module, variables, encode(train, tokenizer, max_length), spec, config, checkpoint_dir=d, progress=progress
    )
    gm = GlueModel(module, variables, tokenizer, train, ev, max_length, info, d)
    if "fp_eval" not in info:
        info = {**info, "fp_eval": evaluate_float(module, variables, gm.batches("eval"), ev), "note": ev.note}
        atomic_write(d / "info.json", info)
        gm = dataclasses.replace(gm, info=info)
    return gm
