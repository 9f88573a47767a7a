"""Resumable units of a study, each cached under a key of everything it depends on.

    model, ranges = hwa_unit("MRPC", "full", fp_model, config, settings)     # cache_dir("hwa")
    ranges = pt_unit(fp_model, start, config, settings, "PT")                # cache_dir("pt")
    mc = evaluation_unit(fp_model, ranges, config, batches, split, settings, "PT")  # cache_dir("results", "compare")

A unit found in the cache is loaded; with `cached_only=True` a missing unit raises
`NotCached` instead of training, optimising or evaluating. The keys (`pt_identity`,
`evaluation_identity`, `tag`, `ranges_tag`) hash JSON of the settings, the tile
config's repr, the noise version and the starting ranges' bytes, so a changed
setting computes a new unit and leaves the old one in place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import zlib
from pathlib import Path

import jax
import numpy as np
import optax

from aimc_jax._cache import atomic_write, cache_dir
from aimc_jax.data import GlueSplit, encode
from aimc_jax.evaluation import MCResult, evaluate_analog
from aimc_jax.models._analog import collect_layer_inputs
from aimc_jax.pt import (
    PT_SEED,
    calibrated_ranges,
    fixed_length_batches,
    load_ranges,
    optimize_ranges,
    save_ranges,
    task_objective,
)
from aimc_jax.study._conditions import StudySettings
from aimc_jax.tile import NOISE_VERSION
from aimc_jax.training import GlueModel, HWAConfig, hwa_glue_model, hwa_recipe

__all__ = [
    "NotCached",
    "evaluation_identity",
    "evaluation_path",
    "evaluation_unit",
    "hwa_unit",
    "naive_ranges",
    "pt_identity",
    "pt_path",
    "pt_unit",
    "ranges_tag",
    "scored_split",
    "tag",
]


class NotCached(Exception):
    """A unit that `cached_only=True` would have to compute."""


def tag(obj) -> str:
    """The first 10 hex digits of the SHA-256 of `obj` as sorted JSON (`str` for anything JSON lacks)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def ranges_tag(ranges) -> str:
    """10 hex digits fingerprinting {layer: Ranges}: layer names and their float32 gamma, beta, ADC bound."""
    h = hashlib.sha256()
    for name in sorted(ranges):
        h.update(name.encode())
        for f in ("column", "input", "output"):
            v = getattr(ranges[name], f)
            if v is not None:
                h.update(np.asarray(v, np.float32).tobytes())
    return h.hexdigest()[:10]


def scored_split(split: GlueSplit, max_eval: int) -> GlueSplit:
    """`split`, or a seeded subset (seed 0, original order) of `max_eval` examples when it is larger."""
    if len(split) <= max_eval:
        return split
    pick = np.sort(np.random.default_rng(0).choice(len(split), max_eval, replace=False))
    return split.subset(pick, split=f"{split.split}[{max_eval} seeded]")


def naive_ranges(gm: GlueModel, config, settings: StudySettings) -> dict:
    """{layer: Ranges}: gamma = column abs-max, beta = min(max|x|, 3 std x) over `settings.calib` training
    examples (`calibration_split(seed=0)`) of `gm`'s own layer inputs."""
    calib = collect_layer_inputs(gm.module, gm.variables, gm.batches(gm.calibration_split(settings.calib)))
    return calibrated_ranges(gm.variables, config, calib, method="naive")


def hwa_unit(task: str, mode: str, fp_model: GlueModel, config, settings: StudySettings, *, cached_only=False):
    """HWA training of `fp_model` ("full" or "reduced"), cached by `training.hwa_glue_model`.

    One epoch (`hwa_recipe`); a training set above `settings.hwa_max_train` gets a seeded subset of
    that size (the recipe's `max_train`, part of the HWA cache key).

    Returns:
      (GlueModel with the HWA-trained weights, {layer: Ranges} full HWA learned, or None for reduced).
    """
    capped = settings.hwa_max_train is not None and len(fp_model.train) > settings.hwa_max_train
    kw = {"config": hwa_recipe(task, max_train=settings.hwa_max_train)} if capped else {}
    try:
        return hwa_glue_model(
            task,
            HWAConfig(mode=mode, range_rule=settings.hwa_range_rule),
            tile_config=config,
            base=fp_model,
            train=not cached_only,
            **kw,
        )
    except FileNotFoundError as e:
        raise NotCached(f"{mode} HWA training") from e


def pt_identity(gm: GlueModel, start, config, settings: StudySettings, name: str) -> dict:
    """What a PT unit depends on (its key and the metadata saved with its ranges)."""
    return {
        "model": str(gm.checkpoint_dir.name),
        "name": name,
        "steps": settings.pt_steps,
        "lr": settings.pt_lr,
        "schedule": "cosine, alpha 0.1",
        "calib": settings.calib,
        "batch": settings.pt_batch,
        "times": settings.times,
        "config": repr(config),
        "noise": NOISE_VERSION,
        "start": ranges_tag(start),
    }


def pt_path(gm: GlueModel, name: str, identity: dict) -> Path:
    """cache_dir("pt") / "<model>-<name>-<tag>.npz"."""
    return cache_dir("pt") / f"{gm.checkpoint_dir.name}-{name.replace(' ', '_')}-{tag(identity)}.npz"


@functools.cache
def _pt_optimizer(lr: float, steps: int) -> optax.GradientTransformation:
    """Adam with cosine decay from `lr` to a tenth over `steps`: one object per setting.

    `optimize_ranges` compiles its step once per objective and transformation object, so
    every PT unit of a study with the same model shapes reuses one compiled step.
    """
    return optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.1))


def pt_unit(gm: GlueModel, start, config, settings: StudySettings, name: str, *, cached_only=False) -> dict:
    """PT of gamma and beta from `start` on `gm`'s calibration data; cached as an .npz with its identity.

    Batches of `settings.pt_batch` of the `settings.calib` examples of `calibration_split(seed=1)`,
    all padded to one length (one compilation); the PT key's seed is
    `PT_SEED + crc32(name) mod 10000`, so each condition draws its own chips, none of them an evaluation chip.

    Returns:
      {layer: Ranges}, the optimised ranges.
    """
    ident = pt_identity(gm, start, config, settings, name)
    path = pt_path(gm, name, ident)
    if path.is_file():
        return load_ranges(path, config=config, variables=gm.variables)
    if cached_only:
        raise NotCached(f"PT of {name}")
    calib = gm.calibration_split(settings.calib, seed=1)
    batches = fixed_length_batches(encode(calib, gm.tokenizer, gm.max_length), settings.pt_batch)
    start_time = time.time()
    # optimize_task_ranges' recipe (task loss, Adam on log ranges, cosine decay to a tenth, a fresh chip per
    # step) with the schedule inside a ready optimiser, as the cached units were made: the other compiled
    # program rounds differently (~5e-7 after one step), and the quantisers amplify that within a few steps
    res = optimize_ranges(
        task_objective(gm.module, gm.variables, config, gm.eval.task, t=settings.times),
        start,
        batches,
        _pt_optimizer(settings.pt_lr, settings.pt_steps),
        steps=settings.pt_steps,
        key=jax.random.key(PT_SEED + zlib.crc32(name.encode()) % 10_000),
        checked=True,  # the first batch in the checked mode: NaN/inf and bad ranges named, not scored
    )
    losses = res.losses[:: max(1, settings.pt_steps // 50)].tolist()
    save_ranges(path, res.ranges, config=config, variables=gm.variables,
                meta={"losses": losses, "seconds": time.time() - start_time, **ident})  # fmt: skip
    return res.ranges


def evaluation_identity(gm: GlueModel, ranges, config, split: GlueSplit, settings: StudySettings, condition: str):
    """What an evaluation cell depends on, its seeds aside (the cell's file name holds them)."""
    return {
        "model": gm.checkpoint_dir.name,
        "condition": condition,
        "config": repr(config),
        "noise": NOISE_VERSION,
        "times": settings.times,
        "n": len(split),
        "examples": tag(split.text_a),
        "ranges": ranges_tag(ranges),
    }


def evaluation_path(split: GlueSplit, identity: dict, seeds) -> Path:
    """cache_dir("results", "compare") / "<task>-<tag>-seeds<first>-<last>.json"."""
    return cache_dir("results", "compare") / f"{split.task.name}-{tag(identity)}-seeds{seeds[0]}-{seeds[-1]}.json"


def evaluation_unit(
    gm: GlueModel, ranges, config, batches, split: GlueSplit, settings: StudySettings, condition: str, *,
    cached_only=False,
) -> MCResult:  # fmt: skip
    """Monte-Carlo scores of `ranges` on `gm` over `settings.seed_list` chips and `settings.times`.

    Cached in cells of `settings.chunk` seeds (`evaluate_analog` in the checked mode); a
    finished cell is loaded, so an interrupted evaluation resumes at its first missing cell.

    Returns:
      `MCResult` over all the seeds: values {metric: (len(times), seeds)}.
    """
    ident = evaluation_identity(gm, ranges, config, split, settings, condition)
    seeds, parts = settings.seed_list, []
    for lo in range(0, len(seeds), settings.chunk):
        chunk = seeds[lo : lo + settings.chunk]
        path = evaluation_path(split, ident, chunk)
        if path.is_file():
            parts.append(MCResult.from_dict(json.loads(path.read_text())))
            continue
        if cached_only:
            raise NotCached(f"evaluation of {condition}, seeds {chunk[0]}-{chunk[-1]}")
        mc = evaluate_analog(
            gm.module, gm.variables, ranges, batches, split, config, times=settings.times, seeds=chunk,
            desc=f"{split.task.name} {condition} seeds {chunk[0]}-{chunk[-1]}", checked=True,
        )  # fmt: skip
        atomic_write(path, {**mc.to_dict(), **ident})
        parts.append(mc)
    return MCResult.concat(parts)
