"""Running a study: each task's conditions on the same chips, every unit cached, resumable.

    study = run_study(["MRPC", "RTE"], StudySettings(seeds=10), report=lambda s: write_report(out, s, ...))
    study.results["MRPC"]["PT"]    # MCResult: values {metric: (times, seeds)}

Per task: the float model's score, then each analog condition in order; its weights
(`hwa_unit`), starting ranges (`naive_ranges` or full HWA's), PT (`pt_unit`) and
evaluation (`evaluation_unit`) are built when first needed and shared by the
conditions that use them. `cached_only=True` reports what is finished: a task stops
at its first unit that is not in the cache (`NotCached`), the other tasks go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from aimc_jax.data import task_spec
from aimc_jax.evaluation import MCResult, evaluate_float, format_time, fp_rows, mc_rows
from aimc_jax.study._conditions import CONDITIONS, Condition, StudySettings
from aimc_jax.study._report import range_changes
from aimc_jax.study._units import NotCached, evaluation_unit, hwa_unit, naive_ranges, pt_unit, scored_split
from aimc_jax.tile import TileConfig
from aimc_jax.training import GlueModel, glue_model

__all__ = ["StudyResult", "condition_units", "run_study"]


@dataclasses.dataclass
class StudyResult:
    """What a study has finished so far (filled in as it runs).

    Attributes:
      rows: result rows (`evaluation.fp_rows` / `mc_rows`), every condition's per-seed values.
      results: {task: {condition name: MCResult}} of the analog conditions finished.
      notes: {task: how its eval split was made} where not the official file as is.
      changes: Markdown rows of what PT changed per layer group (`range_changes`).
    """

    rows: list[dict] = dataclasses.field(default_factory=list)
    results: dict[str, dict[str, MCResult]] = dataclasses.field(default_factory=dict)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    changes: list[str] = dataclasses.field(default_factory=list)


def condition_units(
    task: str,
    fp_model: GlueModel,
    config,
    settings: StudySettings,
    conditions: Sequence[Condition] = CONDITIONS,
    *,
    cached_only: bool = False,
):
    """Yield (condition, GlueModel, ranges, PT's start ranges or None) for each analog condition, in order.

    Each unit is trained, optimised or loaded when a condition first needs it, so the
    FP-weight conditions come before any HWA training.

    Raises:
      NotCached: with `cached_only`, at the first unit not in the cache.
    """
    models: dict[str, tuple[GlueModel, dict | None]] = {"FP": (fp_model, None)}
    naive: dict[str, dict] = {}

    def weights(kind):
        if kind not in models:
            mode = kind.removesuffix(" HWA")
            models[kind] = hwa_unit(task, mode, fp_model, config, settings, cached_only=cached_only)
        return models[kind]

    for cond in conditions:
        if not cond.analog:
            continue
        gm, learned = weights(cond.weights)
        if cond.ranges == "naive":
            if cond.weights not in naive:
                naive[cond.weights] = naive_ranges(gm, config, settings)
            start = naive[cond.weights]
        else:
            start = learned
        if cond.pt:
            yield cond, gm, pt_unit(gm, start, config, settings, cond.name, cached_only=cached_only), start
        else:
            yield cond, gm, start, None


def run_study(
    tasks: Sequence[str],
    settings: StudySettings,
    *,
    config=None,
    conditions: Sequence[Condition] = CONDITIONS,
    glue_dir=None,
    fp_model: Callable[[str], GlueModel] | None = None,
    cached_only: bool = False,
    report: Callable[[StudyResult], None] | None = None,
    verbose: bool = True,
) -> StudyResult:
    """Score every condition of every task on the same chips; every unit is cached, so a rerun resumes.

    Args:
      tasks: GLUE task names.
      settings: the study's numbers (`StudySettings`).
      config: `TileConfig` (default `TileConfig()`).
      conditions: the conditions, in the order they run (default the paper's six).
      glue_dir: GLUE data directory (see `aimc_jax.data.glue_dir`).
      fp_model: task -> the FP `GlueModel` (default `training.glue_model(task, glue_dir=glue_dir)`,
        the cached fine-tuned all-MiniLM-L6-v2).
      cached_only: report only the finished units: no training, PT or Monte-Carlo evaluation.
      report: called with the result so far after each condition (and when a task stops at a
        unit that is not cached), e.g. to rewrite the results files.
      verbose: print each condition's headline metric as it finishes.

    Returns:
      `StudyResult`.
    """
    config = config or TileConfig()
    fp_model = fp_model or (lambda task: glue_model(task, glue_dir=glue_dir))
    say = print if verbose else lambda *a, **k: None
    study = StudyResult()
    for task in tasks:
        gm = fp_model(task)
        split = scored_split(gm.eval, settings.max_eval)
        if split.note:
            study.notes[task] = split.note
        batches = gm.batches(split, 64)
        fp = evaluate_float(gm.module, gm.variables, batches, split)
        study.rows += [r for c in conditions if not c.analog for r in fp_rows(task, fp, c.name)]
        study.results[task] = {}
        units = condition_units(task, gm, config, settings, conditions, cached_only=cached_only)
        try:
            for cond, model, ranges, start in units:
                mc = evaluation_unit(
                    model, ranges, config, batches, split, settings, cond.name, cached_only=cached_only
                )  # fmt: skip
                if start is not None:
                    study.changes += range_changes(task, cond.name, start, ranges)
                study.results[task][cond.name] = mc
                study.rows += mc_rows(mc, cond.name)
                if report is not None:
                    report(study)
                head = task_spec(task).metrics[0]
                summary = " ".join(f"{format_time(t)} {m:.4f}+/-{sd:.4f}" for t, (m, sd) in mc.summary()[head].items())
                say(f"{task} {cond.name} {head}: {summary}", flush=True)
        except NotCached as e:
            say(f"{task}: {e} not finished; its later conditions are not reported", flush=True)
            if report is not None:
                report(study)
    return study
