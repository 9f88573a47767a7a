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
import logging
from pathlib import Path

import numpy as np
from flax import traverse_util

from aimc_jax._cache import atomic_write, cache_dir
from aimc_jax.data import GlueSplit, encode, make_batches, task_spec, task_splits
from aimc_jax.tile import NOISE_VERSION
from aimc_jax.training._finetune import DamagedCheckpoint, FinetuneConfig, finetune
from aimc_jax.training._finetune import finished as finished_run

__all__ = ["GlueModel", "glue_model", "hwa_glue_model", "hwa_recipe", "recipe"]

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


def _finished(d, discard_damaged: bool) -> bool:
    """Whether the run cached in `d` has finished; a damaged info.json raises unless it is to be
    discarded (then False: `finetune`, which checks every checkpoint file, discards and retrains)."""
    try:
        return finished_run(d)
    except DamagedCheckpoint:
        if not discard_damaged:
            raise
        return False


def glue_model(
    task: str,
    *,
    model=None,
    config: FinetuneConfig | None = None,
    glue_dir=None,
    splits: tuple[GlueSplit, GlueSplit] | None = None,
    max_length: int = 128,
    progress: bool = True,
    discard_damaged: bool = False,
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
      discard_damaged: a damaged cached checkpoint raises `DamagedCheckpoint` naming the
        file (default); True deletes it and fine-tunes again.

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
    finished = _finished(d, discard_damaged)
    log = logging.getLogger("aimc_jax")
    level = log.level
    if finished:  # the head initialised by from_pretrained is replaced by the checkpoint's: no warning
        log.setLevel(logging.ERROR)
    try:
        module, variables = from_pretrained(model, num_labels=spec.num_labels, seed=config.seed)
    finally:
        log.setLevel(level)
    variables, info = finetune(
        module, variables, encode(train, tokenizer, max_length), spec, config, checkpoint_dir=d, progress=progress,
        discard_damaged=discard_damaged,
    )  # fmt: skip
    gm = GlueModel(module, variables, tokenizer, train, ev, max_length, info, d)
    if "fp_eval" not in info:
        info = {**info, "fp_eval": evaluate_float(module, variables, gm.batches("eval"), ev), "note": ev.note}
        atomic_write(d / "info.json", info)
        gm = dataclasses.replace(gm, info=info)
    return gm


def hwa_recipe(task: str, **changes) -> FinetuneConfig:
    """HWA fine-tuning recipe: one epoch from the FP fine-tuned model at learning rate 2e-5
    (the FP recipe's training subset), a reduction chosen for CPU cost."""
    base = recipe(task)
    return dataclasses.replace(base, epochs=1.0, learning_rate=2e-5, warmup=0.06, **changes)


def hwa_glue_model(
    task: str,
    hwa,
    *,
    tile_config=None,
    config: FinetuneConfig | None = None,
    base: GlueModel | None = None,
    calibration_examples: int = 512,
    progress: bool = True,
    train: bool = True,
    discard_damaged: bool = False,
    scan_layers: bool = False,
    **glue_model_kwargs,
):
    """HWA fine-tuning of the FP fine-tuned model for `task` (cached like `glue_model`).

    Args:
      task: GLUE task name.
      hwa: `HWAConfig` ("full" or "reduced").
      tile_config: the `TileConfig` whose resolutions, noise and tiling full HWA emulates (default `TileConfig()`).
      config: fine-tuning config (default `hwa_recipe(task)`).
      base: the FP `GlueModel` to start from (default `glue_model(task, **glue_model_kwargs)`).
      calibration_examples: full HWA with `range_rule="lsq"`: training examples for the
        DAC-range start (|mean| + 3 std); the IBM rule initialises from the first
        `hwa.init_from_data` training batches instead (this is then not read).
      progress: progress bars.
      train: False loads a finished run and never trains (`FileNotFoundError` when there is
        none), e.g. to report what a long experiment has finished so far.
      scan_layers: train with the encoder layers scanned (`make_train_step`): compiles in
        seconds for big models, other noise draws (a separate cache entry).
      discard_damaged: a damaged cached checkpoint (this run's or the base's) raises
        `DamagedCheckpoint` naming the file (default); True deletes it and trains again.

    Returns:
      (GlueModel with the plain HWA-trained weights, {layer: Ranges} learned by full HWA
      (gamma = column abs-max of the final weights, beta = learned DAC ranges), or None for reduced HWA).
    """
    import optax

    from aimc_jax.evaluation import evaluate_float
    from aimc_jax.models import Encoder
    from aimc_jax.models._analog import collect_layer_inputs, init_model_ranges
    from aimc_jax.models._calibrate import calibrated_ranges
    from aimc_jax.tile import TileConfig
    from aimc_jax.training._finetune import _optimizer
    from aimc_jax.training._hwa import (
        RANGE_PARAM,
        add_input_ranges,
        clip_weights,
        hwa_dense_factory,
        range_optimizer,
        split_hwa_variables,
    )

    tile_config = tile_config or TileConfig()
    base = base or glue_model(task, progress=progress, discard_damaged=discard_damaged, **glue_model_kwargs)
    spec = task_spec(task)
    config = config or hwa_recipe(spec.name)
    ident = {
        "base": base.checkpoint_dir.name,
        "hwa": hwa.settings(),  # reduced HWA's cache does not depend on range settings it never reads
        "tile": repr(tile_config),
        "noise": NOISE_VERSION,
        "config": dataclasses.asdict(config),
    }
    if not (hwa.mode == "full" and hwa.range_rule == "ibm"):  # the IBM rule never reads it
        ident["calibration_examples"] = calibration_examples
    if scan_layers:  # other random draws than the unrolled run: its own cache entry (unrolled keys unchanged)
        ident["scan_layers"] = True
    tag = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
    d = cache_dir("hwa", f"{base.checkpoint_dir.name}-{hwa.mode}-{tag}")
    if not train and not _finished(d, discard_damaged):
        raise FileNotFoundError(f"no finished {hwa.mode} HWA run for {spec.name} in {d} (train=False)")
    atomic_write(d / "identity.json", json.dumps(ident, sort_keys=True))
    module = Encoder(base.module.config, dense=hwa_dense_factory(hwa, tile_config))
    variables = base.variables
    lsq = hwa.mode == "full" and hwa.range_rule == "lsq"
    if hwa.mode == "full":
        if lsq:  # calibrated start; the IBM rule initialises beta from the first training batches instead
            calib = collect_layer_inputs(
                base.module, variables, base.batches(base.calibration_split(calibration_examples))
            )
            start = calibrated_ranges(variables, tile_config, calib, method="std", k=3.0)
        else:
            start = init_model_ranges(variables, tile_config)  # beta = 3.0 (lightning's init_value), replaced
        variables = add_input_ranges({**variables, "params": clip_weights(variables["params"], hwa.clip_sigma)}, start)

    def optimizer(cfg, total):
        if not lsq:  # IBM: the ranges are ordinary parameters of the network's AdamW
            return _optimizer(cfg, total)

        def label(params):
            flat = traverse_util.flatten_dict(params)
            return traverse_util.unflatten_dict({k: "ranges" if k[-1] == RANGE_PARAM else "weights" for k in flat})

        return optax.multi_transform({"weights": _optimizer(cfg, total), "ranges": range_optimizer(hwa, total)}, label)

    project = (lambda p: clip_weights(p, hwa.clip_sigma)) if hwa.mode == "full" else None
    variables, info = finetune(
        module,
        variables,
        encode(base.train, base.tokenizer, base.max_length),
        spec,
        config,
        checkpoint_dir=d,
        progress=progress,
        optimizer=optimizer,
        project=project,
        discard_damaged=discard_damaged,
        scan_layers=scan_layers,
    )
    plain, ranges = split_hwa_variables(variables, tile_config)
    gm = GlueModel(base.module, plain, base.tokenizer, base.train, base.eval, base.max_length, info, d)
    if "fp_eval" not in info:
        info = {
            **info,
            "fp_eval": evaluate_float(base.module, plain, gm.batches("eval"), base.eval),
            "note": base.eval.note,
        }
        atomic_write(d / "info.json", info)
        gm = dataclasses.replace(gm, info=info)
    return gm, (ranges if hwa.mode == "full" else None)
