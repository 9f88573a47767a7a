"""Which non-ideality, and which layers, cost a task its analog accuracy?

    python experiments/diagnose.py [--task MRPC] [--n 256] [--seeds 2] [--t 3600]

Scores the fine-tuned all-MiniLM-L6-v2 (experiments/finetune_glue.py's cached model)
on `--n` seeded dev examples under a series of tile configurations: every effect
off, each effect alone, the default config with one effect removed, and the
default config with the DAC of one group of layers unclipped. Same chips (seeds) in every
row, naive ranges from 256 training examples (as experiments/baseline.py). Also
prints each layer's relative output error (analog vs float, on float inputs).
Writes experiments/results/diagnose-<task>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

import aimc_jax as aj
from aimc_jax.evaluation import (
    evaluate_analog,
    evaluate_float,
    format_time,
    fp_rows,
    mc_rows,
    run_metadata,
    write_results,
)  # fmt: skip
from aimc_jax.models import layer_groups
from aimc_jax.models._analog import analog_layers
from aimc_jax.training import glue_model

OUT = Path(__file__).resolve().parent / "results"

PCM = dict(prog_noise_scale=1.0, read_noise_scale=1.0, drift_scale=1.0, drift_compensation=True)
ADC = dict(out_res=254, out_bound=10.0)


def conditions(default: aj.TileConfig, names):
    ideal = aj.TileConfig.ideal()
    yield "all ideal", ideal
    yield "default", default
    yield "DAC clipping only (no quantisation)", aj.TileConfig.ideal(inp_clip=True)
    yield "DAC only (clipping + 8 bit)", aj.TileConfig.ideal(inp_res=254, inp_clip=True)
    yield "DAC 8 bit without clipping", aj.TileConfig.ideal(inp_res=254)
    yield "ADC only", aj.TileConfig.ideal(**ADC)
    yield "output noise only", aj.TileConfig.ideal(out_noise=0.04)
    yield "PCM only (programming, read noise, drift, compensation)", aj.TileConfig.ideal(**PCM)
    unclipped = default.replace(inp_clip=False)
    yield "default, DAC without clipping", unclipped
    yield "default, no ADC", default.replace(out_res=None, out_bound=None)
    yield "default, no output noise", default.replace(out_noise=0.0)
    yield "default, no PCM", default.replace(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
    groups = layer_groups(names)  # exact layer names are valid LayerConfigs patterns
    for label, members in groups.items():
        overrides = tuple((n, unclipped) for n in members)
        yield f"default, DAC of {label} without clipping", aj.LayerConfigs(default=default, overrides=overrides)
    head = tuple((n, ideal) for n in groups.get("pooler + classifier", ()))
    yield "default, pooler + classifier ideal", aj.LayerConfigs(default=default, overrides=head)


def layer_errors(variables, ranges, calibration, config, t, seed):
    """Relative output error ||y_analog - y_float|| / ||y_float|| of every layer on its float inputs."""
    out = {}
    layers = analog_layers(variables, config)
    for i, (name, (w, cfg)) in enumerate(sorted(layers.items())):
        x = calibration[name][:1024]
        k1, k2, k3 = jax.random.split(jax.random.fold_in(jax.random.key(seed), i), 3)
        chip = aj.program(w, ranges[name], cfg, key=k1)
        state = aj.read(chip, t, cfg, key=k2)
        y = np.asarray(aj.mvm(state, ranges[name], x, cfg, key=k3))
        ref = x @ np.asarray(w)
        out[name] = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="MRPC")
    parser.add_argument("--n", type=int, default=256, help="seeded dev examples scored")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--t", type=float, default=3600.0, help="drift time in seconds")
    parser.add_argument("--calib", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--conditions", nargs="+", help="run only these conditions (exact labels)")
    parser.add_argument("--glue-dir")
    args = parser.parse_args()
    aj.enable_compilation_cache()
    gm = glue_model(args.task, glue_dir=args.glue_dir)
    n = min(args.n, len(gm.eval))
    idx = np.sort(np.random.default_rng(0).choice(len(gm.eval), n, replace=False))
    split = gm.eval.subset(idx, split=f"{gm.eval.split}[{n} seeded]")
    batches = gm.batches(split, args.batch, buckets=(gm.max_length,))  # one shape: one compilation per config
    calibration = aj.collect_layer_inputs(gm.module, gm.variables, gm.batches(gm.calibration_split(args.calib)))
    default = aj.TileConfig()
    head = split.task.metrics[0]
    fp = evaluate_float(gm.module, gm.variables, batches, split)
    print(f"{args.task} on {n} dev examples, t = {format_time(args.t)}, seeds 0-{args.seeds - 1}")
    print(f"FP {head} {fp[head]:.4f}", flush=True)
    rows = fp_rows(args.task, fp)
    seeds = list(range(args.seeds))
    chosen = list(conditions(default, analog_layers(gm.variables, default)))
    if args.conditions:
        unknown = sorted(set(args.conditions) - {label for label, _ in chosen})
        if unknown:
            raise SystemExit(f"unknown conditions {unknown}; choose from {[label for label, _ in chosen]}")
        chosen = [(label, c) for label, c in chosen if label in args.conditions]
    for label, config in chosen:
        ranges = aj.init_model_ranges(gm.variables, config, calibration=calibration)
        mc = evaluate_analog(
            gm.module, gm.variables, ranges, batches, split, config, times=(args.t,), seeds=seeds, desc=label,
            checked=True,
        )  # fmt: skip
        rows += mc_rows(mc, label)
        mean, std = mc.summary()[head][args.t]
        print(f"{label:60s} {head} {mean:.4f} +/- {std:.4f}", flush=True)
    errors = layer_errors(gm.variables, aj.init_model_ranges(gm.variables, default, calibration=calibration),
                          calibration, default, args.t, 0)  # fmt: skip
    lines = ["", "## Relative output error per layer", "",
             "||y_analog - y_float|| / ||y_float|| on 1,024 float calibration inputs, default config, one chip.", "",
             "| layer | error |", "|---|---|"]  # fmt: skip
    for name, e in errors.items():
        lines.append(f"| {name} | {e:.4f} |")
    print("\n".join(lines), flush=True)
    meta = run_metadata(
        seeds=seeds,
        times=[args.t],
        config=default,
        ranges="naive: gamma column abs-max, beta min(max|x|, 3 std) from 256 training examples",
        examples=f"{n} seeded dev examples (numpy default_rng(0)), padded to {gm.max_length}",
    )
    stem = OUT / (f"diagnose-{args.task}" + ("" if not args.conditions else "-subset"))
    paths = write_results(stem, rows, meta, title=f"Where {args.task}'s analog accuracy goes",
                          plot=False)  # fmt: skip
    paths[1].write_text(paths[1].read_text() + "\n".join(lines) + "\n")
    saved = json.loads(paths[0].read_text())
    paths[0].write_text(json.dumps({**saved, "layer_errors": errors}, indent=1))


if __name__ == "__main__":
    main()
