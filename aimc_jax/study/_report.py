"""A study's results files: JSON, Markdown with the headline, claims and PT-gain tables, and two plots.

    write_report(Path("results/compare"), study, settings, config, title="...")
    # results/compare.{json,md,png}, results/compare_claims.png

`headline_table` and `range_changes` are Markdown lines of their own, for a notebook
or another report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from aimc_jax.data import task_spec
from aimc_jax.evaluation import format_time, run_metadata, write_results
from aimc_jax.models import layer_groups
from aimc_jax.study._claims import CLAIMS, PT_GAIN, Claim, claims_table, plot_claims
from aimc_jax.study._conditions import CONDITIONS, StudySettings
from aimc_jax.training import HWAConfig

__all__ = ["headline_table", "range_changes", "write_report"]


def headline_table(rows: Sequence[dict], times: Sequence[float], conditions: Sequence[str] | None = None) -> list[str]:
    """Markdown: each task's headline metric per condition, mean +/- std over seeds at the first drift time
    (the last in brackets); the float model's score alone; "-" where a condition has no result yet.

    Args:
      rows: result rows (`evaluation.fp_rows` / `mc_rows`).
      times: the study's drift times.
      conditions: the columns (default the names of `CONDITIONS`).
    """
    cols = tuple(conditions or (c.name for c in CONDITIONS))
    lines = ["| task | metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        metric = task_spec(task).metrics[0]
        cells = {}
        for r in rows:
            if r["task"] != task or r["metric"] != metric:
                continue
            if r["time"] is None:
                cells[r["condition"]] = f"{r['mean']:.3f}"
            elif r["time"] in (times[0], times[-1]):
                cells.setdefault(r["condition"], []).append(f"{r['mean']:.3f} +/- {r['std']:.3f}")
        out = [c if isinstance(c, str) else f"{c[0]} ({c[1]})" for c in (cells.get(k, "-") for k in cols)]
        lines.append(f"| {task} | {metric} | " + " | ".join(out) + " |")
    return lines


def range_changes(task: str, condition: str, start: Mapping, ranges: Mapping) -> list[str]:
    """Markdown rows: per layer group (`models.layer_groups` of the layer names), the geometric-mean ratio
    (PT / start) of gamma and of beta, its min-max over all range entries, and the share that grew."""
    rows = []
    for group, names in layer_groups(ranges).items():
        cells = [task, condition, group]
        for field in ("column", "input"):
            ratio = np.concatenate(
                [np.ravel(np.asarray(getattr(ranges[n], field)) / np.asarray(getattr(start[n], field))) for n in names]
            )
            log = np.log(ratio)
            cells.append(f"{np.exp(log.mean()):.2f} (x{np.exp(log.min()):.2f}-x{np.exp(log.max()):.2f}; "
                         f"{np.mean(ratio > 1):.0%} up)")  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _metadata(study, settings: StudySettings, config) -> dict:
    s = settings
    recipe = "1 epoch from the FP fine-tuned model, lr 2e-5 (aimc_jax.training.hwa_recipe)"
    if s.hwa_max_train is not None:
        recipe += f" (a seeded subset of {s.hwa_max_train} examples where the training set is larger: SST-2)"
    return run_metadata(
        seeds=s.seed_list,
        times=list(s.times),
        config=config,
        scored=f"at most {s.max_eval} seeded eval examples per task",
        pt={
            "objective": "task loss, t drawn from the three times",
            "optimizer": f"adam, rate {s.pt_lr} cosine-decayed to {s.pt_lr / 10}, on log ranges",
            "steps": s.pt_steps,
            "batch": s.pt_batch,
            "calibration": f"{s.calib} training examples",
        },
        hwa={
            "full": HWAConfig(mode="full", range_rule=s.hwa_range_rule).settings(),
            "reduced": HWAConfig(mode="reduced").settings(),
            "recipe": recipe,
        },
        notes=study.notes,
    )


def write_report(
    out: Path,
    study,
    settings: StudySettings,
    config,
    *,
    title: str,
    claims: Sequence[Claim] = CLAIMS,
    pt_gain: Claim = PT_GAIN,
    appendix: str = "",
) -> list[Path]:
    """(Re)write `out`.{json,md,png} and `out`_claims.png with everything `study` holds so far.

    Args:
      out: path without suffix, e.g. experiments/results/compare.
      study: a `StudyResult` (rows, per-task results, notes, PT range changes).
      settings: the study's `StudySettings` (stamped into the metadata).
      config: the study's `TileConfig` (stamped into the metadata).
      title: the Markdown title.
      claims: the claims table's and plot's columns.
      pt_gain: the claim of the "PT on the FP weights against naive ranges" table.
      appendix: Markdown appended at the end (e.g. earlier settings kept for the record).

    Returns:
      The paths written by `evaluation.write_results` (json, md, png).
    """
    paths = write_results(out, study.rows, _metadata(study, settings, config), title=title)
    with paths[1].open("a") as f:
        first, last = format_time(settings.times[0]), format_time(settings.times[-1])
        f.write(
            f"\n## Headline metric at {first} ({last}), mean +/- std over seeds\n\n"
            f"Scored on at most {settings.max_eval} seeded dev examples per task; '-': not finished yet.\n\n"
        )
        f.write("\n".join(headline_table(study.rows, settings.times)) + "\n")
        f.write("\n## The paper's claims (paired over seeds; metric x 100; mean [95 % CI])\n\n")
        f.write(
            "A claim holds (yes) when the whole 95 % CI of the difference lies above its bar, fails (no) when\n"
            "the whole CI misses it, and is not shown when the CI straddles the bar.\n\n"
        )
        f.write("\n".join(claims_table(study.results, claims)) + "\n")
        claims_png = paths[0].with_name(paths[0].stem + "_claims.png")
        if plot_claims(study.results, claims_png, claims):
            f.write(f"\n![claims]({claims_png.name})\n")
        f.write("\n## PT on the FP weights against naive ranges (paired over seeds; metric x 100)\n\n")
        f.write("\n".join(claims_table(study.results, (pt_gain,))) + "\n")
        if study.changes:
            f.write(
                "\n## What PT changed\n\nPer layer group: geometric mean of PT range / starting range "
                "(min-max over all range entries; share that grew).\n\n"
                "| task | condition | layers | gamma (column) | beta (DAC input) |\n|---|---|---|---|---|\n"
            )
            f.write("\n".join(study.changes) + "\n")
        f.write(appendix)
    return paths
