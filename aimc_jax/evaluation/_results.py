"""Results files: JSON (everything, per-seed values included), a Markdown table, a plot.

    rows = fp_rows("SST-2", fp_metrics) + mc_rows(mc_result, "naive ranges")
    write_results(Path("experiments/results/baseline"), rows, run_metadata(seeds=..., config=...))

Each file is stamped with the command that produced it, the seeds, the config and
the date (`run_metadata`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import shlex
import sys
import textwrap
from pathlib import Path

import numpy as np

from aimc_jax._cache import atomic_write
from aimc_jax.data import task_spec
from aimc_jax.evaluation._montecarlo import MCResult
from aimc_jax.tile import NOISE_VERSION

__all__ = ["format_time", "fp_rows", "mc_rows", "read_results", "run_metadata", "write_results"]

_UNITS = ((365 * 86400.0, "year"), (86400.0, "day"), (3600.0, "h"), (60.0, "min"), (1.0, "s"))


def format_time(t: float | None) -> str:
    """1.0 -> "1 s", 3600 -> "1 h", 86400 -> "1 day", 31536000 -> "1 year"; None -> "-"."""
    if t is None:
        return "-"
    for size, unit in _UNITS:
        if t >= size:
            v = t / size
            plural = "s" if unit in ("year", "day") and round(v, 3) != 1 else ""
            return f"{v:g} {unit}{plural}"
    return f"{t:g} s"


def fp_rows(task: str, metrics: dict[str, float], condition: str = "FP") -> list[dict]:
    """Rows for a float (noise-free) score: one per metric (headline metric first), no drift time, no spread."""
    order = task_spec(task).metrics
    metrics = dict(sorted(metrics.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return [
        {"task": task_spec(task).name, "condition": condition, "metric": m, "time": None, "mean": v, "std": 0.0,
         "values": [v]}
        for m, v in metrics.items()
    ]  # fmt: skip


def mc_rows(result: MCResult, condition: str) -> list[dict]:
    """Rows for a Monte-Carlo result: one per (metric, drift time), with every per-seed value."""
    ddof = 1 if len(result.seeds) > 1 else 0
    return [
        {
            "task": result.task,
            "condition": condition,
            "metric": m,
            "time": t,
            "mean": float(v[i].mean()),
            "std": float(v[i].std(ddof=ddof)),
            "values": [float(x) for x in v[i]],
            "seeds": list(result.seeds),
            "n_examples": result.n_examples,
        }
        for m, v in result.values.items()
        for i, t in enumerate(result.times)
    ]


def run_metadata(**extra) -> dict:
    """Command line, date, machine and package versions, plus `extra` (seeds, configs...; dataclasses as dicts)."""
    import jax

    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {k: plain(x) for k, x in dataclasses.asdict(v).items()}
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"{len(jax.devices())} device(s)",
        "versions": {"python": platform.python_version(), "jax": jax.__version__},
        "noise_version": NOISE_VERSION,
        **{k: plain(v) for k, v in extra.items()},
    }


def _markdown(rows: list[dict], meta: dict, title: str) -> str:
    lines = [f"# {title}", ""]
    for k, v in meta.items():
        lines.append(f"- {k}: `{json.dumps(v) if not isinstance(v, str) else v}`")
    lines.append("")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    times = sorted({r["time"] for r in rows if r["time"] is not None})
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    lines.append("Mean +/- standard deviation over seeds (one chip per seed); float rows have no spread.")
    lines.append("")
    header = ["task", "metric", "condition", *([format_time(t) for t in times] or ["score"])]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        metrics = list(dict.fromkeys(r["metric"] for r in rows if r["task"] == task))
        for m in metrics:
            for c in conditions:
                cell = {r["time"]: r for r in rows if (r["task"], r["metric"], r["condition"]) == (task, m, c)}
                if not cell:
                    continue
                if None in cell:  # float: same value at every time
                    vals = [f"{cell[None]['mean']:.4f}"] * max(1, len(times))
                else:
                    vals = [f"{cell[t]['mean']:.4f} +/- {cell[t]['std']:.4f}" if t in cell else "" for t in times]
                lines.append("| " + " | ".join([task, m, c, *vals]) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. inline plots) is left alone

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cols = min(3, len(tasks))
    nrows = -(-len(tasks) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        metric = task_spec(task).metrics[0]
        sel = [r for r in rows if r["task"] == task and r["metric"] == metric]
        for i, c in enumerate(dict.fromkeys(r["condition"] for r in sel)):
            pts = sorted((r for r in sel if r["condition"] == c), key=lambda r: r["time"] or 0)
            color = f"C{i}"
            if pts[0]["time"] is None:
                ax.axhline(pts[0]["mean"], color=color, ls="--", label=c)
                continue
            ax.errorbar(
                [r["time"] for r in pts], [r["mean"] for r in pts], yerr=[r["std"] for r in pts],
                marker="o", capsize=3, color=color, label=c,
            )  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("drift time (s)")
        ax.set_ylabel(metric)
        ax.set_title(task)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    # wrapped to the figure's width: a long title was cut at the edges
    fig.suptitle(textwrap.fill(title, width=50 * cols, break_on_hyphens=False), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(stem, rows: list[dict], meta: dict, *, title: str | None = None, plot: bool = True) -> list[Path]:
    """Write `<stem>.json`, `<stem>.md` and (with `plot`) `<stem>.png`; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    title = title or stem.name
    for r in rows:
        if not np.isfinite(r["mean"]):
            raise ValueError(f"non-finite result in {r['task']}/{r['condition']}/{r['metric']}: {r['mean']}")
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    atomic_write(paths[0], json.dumps({"title": title, "meta": meta, "rows": rows}, indent=1))
    atomic_write(paths[1], _markdown(rows, meta, title))
    if plot:
        paths.append(stem.with_suffix(".png"))
        _plot(rows, paths[-1], title)
    return paths


def read_results(path) -> dict:
    """The JSON written by `write_results`."""
    return json.loads(Path(path).read_text())
