"""Post-training range optimisation: toy optimum, frozen weights, beats naive ranges, save/load, divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import aimc_jax as aj
from aimc_jax import pt

from ._tiny import tiny_batch, tiny_encoder

LAYER = "encoder/layer_0/intermediate/dense"


@pytest.fixture(scope="module")
def tiny():
    module, variables = tiny_encoder(2, vocab_size=99, seed=1)

    class _Cfg:  # tiny_batch only needs these fields
        vocab_size, pad_token_id, type_vocab_size = 99, 0, 2

    class _M:
        config = _Cfg

    batches = []
    for seed in range(3):
        ids, mask, types = tiny_batch(_M, batch=8, length=12, seed=seed)
        batches.append(
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "weight": np.ones(8, np.float32)}
        )
    return module, variables, batches


def test_pt_recovers_the_clipping_vs_quantisation_optimum_of_a_dac_range(tiny):
    """A DAC-only layer on Gaussian inputs: PT's beta lands at the grid-search optimum of the MSE."""
    _, variables, _ = tiny
    config = aj.TileConfig.ideal(inp_res=7, inp_clip=True)  # coarse DAC, everything else ideal: a deterministic loss
    w = np.asarray(variables["params"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"])
    x = np.random.default_rng(0).standard_normal((4096, w.shape[0])).astype(np.float32)
    obj = pt.layerwise_objective(variables, config, t=1.0, layers=[LAYER])
    ranges = aj.init_model_ranges(variables, config)
    start = {LAYER: ranges[LAYER].replace(input=jnp.full_like(ranges[LAYER].input, 4.0))}
    start = {**ranges, **start}
    key = jax.random.key(0)

    def loss_at(beta):
        r = {**start, LAYER: start[LAYER].replace(input=jnp.full_like(start[LAYER].input, beta))}
        return float(obj(r, {LAYER: x}, key))

    grid = np.linspace(0.5, 4.0, 141)
    losses = np.array([loss_at(b) for b in grid])
    best = grid[np.argmin(losses)]
    res = pt.optimize_ranges(
        obj, start, [{LAYER: x}], optax.adam(0.03), steps=150, key=key, fields="input", layers=LAYER, progress=False
    )
    beta = float(np.asarray(res.ranges[LAYER].input).mean())
    assert res.losses[-1] < 0.5 * res.losses[0]
    assert abs(beta - best) < 0.15, (beta, best)
    assert loss_at(beta) < 1.05 * losses.min()
    # only the chosen field and layer moved
    np.testing.assert_array_equal(np.asarray(res.ranges[LAYER].column), np.asarray(start[LAYER].column))
    other = "encoder/layer_1/output/dense"
    np.testing.assert_array_equal(np.asarray(res.ranges[other].input), np.asarray(start[other].input))


def test_pt_keeps_network_weights_bit_identical_and_beats_naive_ranges(tiny):
    module, variables, batches = tiny
    config = aj.TileConfig(inp_res=15, out_res=63, out_noise=0.08)  # resolutions where the ranges matter
    before = jax.tree.map(lambda a: np.array(a, copy=True), variables)
    calib = aj.collect_layer_inputs(module, variables, batches)
    naive = pt.calibrated_ranges(variables, config, calib, method="naive")
    obj = pt.distillation_objective(module, variables, config, t=(3600.0, 86400.0))
    res = pt.optimize_ranges(obj, naive, batches, optax.adam(0.05), steps=40, key=jax.random.key(1), progress=False)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert set(res.ranges) == set(naive) and res.layers == tuple(naive)
    for r in res.ranges.values():
        assert np.all(np.isfinite(np.asarray(r.column))) and np.all(np.asarray(r.column) > 0)
    # expected loss over fresh chips (keys never used in training), paired per key
    eval_obj = jax.jit(lambda r, b, k: obj(r, b, k))
    keys = [jax.random.fold_in(jax.random.key(1234), i) for i in range(12)]
    diff = [
        float(eval_obj(res.ranges, batches[i % 3], k)) - float(eval_obj(naive, batches[i % 3], k))
        for i, k in enumerate(keys)
    ]
    assert np.mean(diff) < 0 and np.mean(np.array(diff) < 0) >= 0.75, diff


def test_task_and_layerwise_objectives_give_finite_gradients_to_both_ranges(tiny):
    module, variables, batches = tiny
    config = aj.TileConfig()
    ranges = aj.init_model_ranges(variables, config)
    batch = {**batches[0], "labels": np.array([0, 1] * 4, np.int32)}
    obj = pt.task_objective(module, variables, config, "SST-2", t=60.0)
    theta = pt.split_ranges(ranges, ("column", "input"), tuple(ranges))
    g = jax.grad(lambda th: obj(pt.merge_ranges(ranges, th), jax.tree.map(jnp.asarray, batch), jax.random.key(0)))(
        theta
    )
    for name in (LAYER, "classifier"):
        for f in ("column", "input"):
            a = np.asarray(g[name][f])
            assert np.all(np.isfinite(a)) and np.any(a != 0), (name, f)
    calib = aj.collect_layer_inputs(module, variables, batches)
    lw = pt.layerwise_objective(variables, config, t=60.0)
    lb = pt.layer_input_batches(calib, rows=64, n_batches=2)
    assert len(lb) == 2 and set(lb[0]) == set(calib) and lb[0][LAYER].shape == (64, 32)
    res = pt.optimize_ranges(lw, ranges, lb, optax.adam(0.02), steps=3, key=jax.random.key(0), progress=False)
    assert res.losses.shape == (3,) and np.all(np.isfinite(res.losses))


def test_calibration_methods(tiny):
    module, variables, batches = tiny
    config = aj.TileConfig()
    calib = aj.collect_layer_inputs(module, variables, batches)
    x = calib[LAYER]
    got = {
        m: float(pt.calibrated_ranges(variables, config, calib, method=m)[LAYER].input[0, 0]) for m in pt.INPUT_METHODS
    }
    assert got["max"] == pytest.approx(np.abs(x).max(), rel=1e-6)
    assert got["naive"] == pytest.approx(min(np.abs(x).max(), 3 * x.std()), rel=1e-5)
    assert got["std"] == pytest.approx(abs(x.mean()) + 3 * x.std(), rel=1e-5)
    assert got["percentile"] == pytest.approx(np.percentile(np.abs(x), 99.9), rel=1e-6)
    naive = aj.init_model_ranges(variables, config, calibration=calib)
    np.testing.assert_allclose(
        np.asarray(pt.calibrated_ranges(variables, config, calib)[LAYER].input), np.asarray(naive[LAYER].input), 1e-5
    )
    with pytest.raises(ValueError, match="method must be one of"):
        pt.calibrated_ranges(variables, config, calib, method="mean")
    with pytest.raises(ValueError, match="calibration inputs missing"):
        pt.calibrated_ranges(variables, config, {LAYER: x})
    filled = pt.with_output_ranges(naive, config, variables)
    assert float(filled[LAYER].output[0, 0]) == config.out_bound


def _rewrite_header(src, dst, edit):
    """A copy of ranges file `src` at `dst` with its JSON header changed by `edit(header)`."""
    import json

    with np.load(src) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    header = json.loads(bytes(arrays.pop("__header__")).decode())
    edit(header)
    np.savez(dst, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return dst


def test_save_load_round_trip_and_refusals(tiny, tmp_path):
    _module, variables, _ = tiny
    config = aj.TileConfig()
    ranges = pt.with_output_ranges(aj.init_model_ranges(variables, config), config, variables)
    ranges = {k: r.replace(input=r.input * 1.2345) for k, r in ranges.items()}
    path = pt.save_ranges(tmp_path / "r.npz", ranges, config=config, variables=variables, meta={"task": "toy"})
    back = pt.load_ranges(path, config=config, variables=variables)
    for name in ranges:
        for f in ("column", "input", "output"):
            np.testing.assert_array_equal(np.asarray(getattr(back[name], f)), np.asarray(getattr(ranges[name], f)))
    assert pt.read_meta(path) == {"task": "toy"}
    with pytest.raises(ValueError, match=r"another config \(config.out_noise: 0.04 saved, 0.05 now\)"):
        pt.load_ranges(path, config=config.replace(out_noise=0.05), variables=variables)
    # a file written before a field existed (here: weight_noise) loads while that field is at its default
    older = _rewrite_header(path, tmp_path / "older.npz", lambda h: h["config_record"]["fields"].pop("weight_noise"))
    pt.load_ranges(older, config=config, variables=variables)
    with pytest.raises(ValueError, match=r"config.weight_noise: 0.0 saved, 0.1 now"):
        pt.load_ranges(older, config=config.replace(weight_noise=0.1), variables=variables)
    # format 1 (repr only) still loads by repr
    first = _rewrite_header(path, tmp_path / "first.npz", lambda h: [h.pop("config_record"), h.pop("format")])
    pt.load_ranges(first, config=config, variables=variables)
    with pytest.raises(ValueError, match="optimised for config"):
        pt.load_ranges(first, config=config.replace(out_noise=0.05), variables=variables)
    layered = aj.LayerConfigs(default=config, overrides=(("classifier*", config.replace(out_res=126)),))
    lpath = pt.save_ranges(tmp_path / "l.npz", ranges, config=layered, variables=variables)
    pt.load_ranges(lpath, config=layered, variables=variables)
    with pytest.raises(ValueError, match=r"config\['classifier\*'\].out_res: 126 saved, 254 now"):
        pt.load_ranges(
            lpath, config=aj.LayerConfigs(default=config, overrides=(("classifier*", config),)), variables=variables
        )
    other = jax.tree.map(lambda a: a, variables)
    other["params"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"] = (
        np.asarray(other["params"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"]) + 1e-3
    )
    with pytest.raises(ValueError, match="different weights"):
        pt.load_ranges(path, config=config, variables=other)
    _, bigger = tiny_encoder(3, vocab_size=99)
    with pytest.raises(ValueError, match="shape"):
        pt.load_ranges(path, config=config, variables=bigger)
    bad = {**ranges, LAYER: ranges[LAYER].replace(input=ranges[LAYER].input * np.nan)}
    with pytest.raises(ValueError, match="NaN or inf"):
        pt.save_ranges(tmp_path / "bad.npz", bad, config=config, variables=variables)


def test_divergence_stops_with_the_last_finite_ranges(tiny):
    _, variables, _ = tiny
    config = aj.TileConfig()
    ranges = aj.init_model_ranges(variables, config)

    def exploding(r, batch, key):  # finite while beta < 5, then NaN
        s = sum(jnp.sum(x.input) for x in r.values()) / sum(x.input.size for x in r.values())
        return jnp.where(s < 5.0, -s, jnp.nan)

    with pytest.raises(pt.PTDiverged, match="diverged at step") as info:
        pt.optimize_ranges(exploding, ranges, [None], optax.sgd(1.0), steps=100, key=jax.random.key(0), progress=False)
    assert info.value.step > 0
    for r in info.value.ranges.values():
        assert np.all(np.isfinite(np.asarray(r.input)))
    with pytest.raises(ValueError, match="fields must be"):
        pt.optimize_ranges(exploding, ranges, [None], optax.sgd(1.0), steps=1, key=jax.random.key(0), fields="gain")
    with pytest.raises(ValueError, match=r"ranges\.output is None"):
        pt.optimize_ranges(exploding, ranges, [None], optax.sgd(1.0), steps=1, key=jax.random.key(0), fields="output")
    with pytest.raises(TypeError, match="explicit PRNG key"):
        pt.optimize_ranges(exploding, ranges, [None], optax.sgd(1.0), steps=1, key=None)
    with pytest.raises(ValueError, match="no analog layer matches"):
        pt.optimize_ranges(exploding, ranges, [None], optax.sgd(1.0), steps=1, key=jax.random.key(0), layers="x*")


def test_select_layers_matches_globs_in_order_and_rejects_no_match():
    names = ["encoder/layer_0/output/dense", "encoder/layer_0/attention/output/dense", "pooler/dense"]
    assert pt.select_layers(names, None) == tuple(names)
    assert pt.select_layers(names, "encoder/layer_?/output/dense") == ("encoder/layer_0/output/dense",)
    assert pt.select_layers(names, ("pooler*", "*attention*")) == (names[1], names[2])
    with pytest.raises(ValueError, match="no analog layer"):
        pt.select_layers(names, "classifier*")


def test_second_call_new_rate_schedule_and_new_objective_compile_nothing(tiny):
    module, variables, batches = tiny
    config = aj.TileConfig()
    ranges = aj.init_model_ranges(variables, config)
    labelled = [{**b, "labels": np.arange(8, dtype=np.int32) % 2} for b in batches[:2]]

    def run(learning_rate, **kw):
        obj = pt.task_objective(module, variables, config, "SST-2", t=3600.0)  # a new objective object each call
        return pt.optimize_ranges(
            obj, ranges, labelled, optax.adam, learning_rate=learning_rate, steps=3, key=jax.random.key(0), **kw
        ).losses

    first = run(0.05, progress=False)
    compiled = pt._optimize._pt_step._cache_size()
    again = run(0.05, progress=False)
    np.testing.assert_array_equal(first, again)
    run(0.01, progress=False)
    run(optax.cosine_decay_schedule(0.05, 3, alpha=0.1), progress=False)
    run(np.array([0.05, 0.02, 0.01], np.float32), progress=False)
    assert pt._optimize._pt_step._cache_size() == compiled
    # the rate fed as data is the rate: the same losses as optax.adam(0.05) built in advance
    obj = pt.task_objective(module, variables, config, "SST-2", t=3600.0)
    ready = pt.optimize_ranges(obj, ranges, labelled, optax.adam(0.05), steps=3, key=jax.random.key(0), progress=False)
    np.testing.assert_allclose(first, ready.losses, rtol=1e-5)
    # a schedule equals its per-step values
    sched = optax.linear_schedule(0.05, 0.0, 3)
    np.testing.assert_array_equal(
        run(sched, progress=False), run(np.array([sched(s) for s in range(3)]), progress=False)
    )
    with pytest.raises(ValueError, match="learning_rate must be"):
        run(np.ones(2, np.float32), progress=False)
    with pytest.raises(ValueError, match="needs learning_rate"):
        pt.optimize_ranges(obj, ranges, labelled, optax.adam, steps=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="go with an optax factory"):
        pt.optimize_ranges(obj, ranges, labelled, optax.adam(0.1), learning_rate=0.1, steps=1, key=jax.random.key(0))


def test_pt_refuses_an_update_that_makes_a_range_infinite(tiny):
    _, variables, _ = tiny
    ranges = aj.init_model_ranges(variables, aj.TileConfig())

    def pulls_up(r, batch, key):  # a finite loss whose gradient drives beta to exp(huge) = inf
        return -sum(jnp.sum(x.input) for x in r.values())

    with pytest.raises(pt.PTDiverged) as info:
        pt.optimize_ranges(pulls_up, ranges, [None], optax.sgd(300.0), steps=1, key=jax.random.key(0), progress=False)
    for r in info.value.ranges.values():
        assert np.all(np.isfinite(np.asarray(r.input))) and np.all(np.asarray(r.input) > 0)


def test_pt_refuses_a_range_that_moves_beyond_e30_of_its_start(tiny):
    _, variables, _ = tiny
    ranges = aj.init_model_ranges(variables, aj.TileConfig())

    def pulls_down(r, batch, key):  # finite everywhere; each step moves log beta by -8 (sgd, rate 8)
        return sum(jnp.sum(jnp.log(x.input)) for x in r.values())

    with pytest.raises(pt.PTDiverged, match=r"more than e\^30") as info:
        pt.optimize_ranges(pulls_down, ranges, [None], optax.sgd(8.0), steps=10, key=jax.random.key(0),
                           fields="input", progress=False)  # fmt: skip
    assert info.value.step == 3  # log beta: -8, -16, -24 accepted; -32 refused
    for name, r in info.value.ranges.items():
        np.testing.assert_allclose(np.log(r.input / ranges[name].input), -24.0, rtol=1e-5)
