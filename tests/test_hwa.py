"""HWA training layers: float without noise, tile emulation, weight noise statistics, clipping, learned ranges."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import aimc_jax as aj
from aimc_jax import pt
from aimc_jax.models import Encoder
from aimc_jax.training import (
    FinetuneConfig,
    HWAConfig,
    HWADense,
    add_input_ranges,
    clip_weights,
    finetune,
    hwa_dense_factory,
    log_space,
    range_optimizer,
    split_hwa_variables,
)

from ._tiny import tiny_encoder


def _layer(hwa, tile, w, b, beta=None):
    layer = HWADense(w.shape[1], hwa=hwa, tile_config=tile)
    params = {"kernel": w, "bias": b}
    if hwa.mode == "full":
        params["input_range"] = beta
    return layer, {"params": params}


W = np.random.default_rng(0).standard_normal((700, 300)).astype(np.float32) * 0.05
B = np.random.default_rng(1).standard_normal(300).astype(np.float32)
X = np.random.default_rng(2).standard_normal((64, 700)).astype(np.float32)


def test_without_an_hwa_rng_the_layer_is_float_and_ideal_tiles_equal_float():
    for mode in ("full", "reduced"):
        layer, v = _layer(HWAConfig(mode=mode), aj.TileConfig(), W, B, np.full((2, 1), 4.0, np.float32))
        np.testing.assert_allclose(np.asarray(layer.apply(v, X)), X @ W + B, rtol=1e-5, atol=1e-5)
    ideal = aj.TileConfig.ideal()
    layer, v = _layer(HWAConfig(weight_noise=0.0), ideal, W, B, np.full((2, 1), 100.0, np.float32))
    y = layer.apply(v, X, rngs={"hwa": jax.random.key(0)})
    np.testing.assert_allclose(np.asarray(y), X @ W + B, rtol=1e-4, atol=1e-4)


def test_full_hwa_lsq_rule_is_noisy_quantised_and_learns_ranges_with_decay():
    tile = aj.TileConfig()
    beta = np.full((2, 1), 3.0, np.float32)
    layer, v = _layer(HWAConfig(range_rule="lsq"), tile, W, B, beta)
    y1 = layer.apply(v, X, rngs={"hwa": jax.random.key(0)})
    y2 = layer.apply(v, X, rngs={"hwa": jax.random.key(1)})
    assert 0 < float(jnp.std(y1 - y2)) < 0.5 * float(np.std(X @ W))

    def loss(params):
        y, sown = layer.apply({"params": params}, X, rngs={"hwa": jax.random.key(0)}, mutable=["losses"])
        return jnp.mean(y**2) + sum(jnp.sum(s) for s in jax.tree.leaves(sown)), sown

    (_, sown), g = jax.value_and_grad(loss, has_aux=True)(v["params"])
    for k in ("kernel", "bias", "input_range"):
        assert np.all(np.isfinite(np.asarray(g[k]))) and np.any(np.asarray(g[k]) != 0), k
    # |x| < 3 for > 99 % of standard normal inputs: the decay term is active
    (decay,) = jax.tree.leaves(sown)
    assert float(decay) == pytest.approx(0.001 * 3.0 * 2, rel=1e-6)


def test_ibm_dac_range_gradient_on_a_hand_made_case():
    # aihwkit's input-range backward, written out: with g = dL/dx_c (x_c = clip(x, +/- b)),
    # dL/db = b * (sum_{x >= b} min(g, 0) - sum_{x <= -b} max(g, 0)) + decay * b * [inside > 95 %],
    # dL/dx = g inside (|x| == b counts as inside), 0 where clipped.
    from aimc_jax.tile._quant import ibm_dac

    sg = jax.lax.stop_gradient  # the back-scaling by b gives b no gradient (as in the HWA kernel)
    b = jnp.float32(2.0)
    x = jnp.array([1.0, -0.5, 3.0, 5.0, -4.0, 2.0], jnp.float32)
    g = jnp.array([0.5, 0.5, -1.0, 2.0, 3.0, -0.5], jnp.float32)  # dL/dx_c; dL/du = b * g

    def loss(x, b, decay):
        return jnp.sum(ibm_dac(x, b, jnp.float32(x.size), 254, decay, 0.95) * sg(b) * g)

    gx, gb = jax.grad(loss, argnums=(0, 1))(x, b, 0.001)
    # upper: 3 (g -1), 5 (g +2: wants a smaller output, ignored), 2 (g -0.5); lower: -4 (g +3)
    assert float(gb) == pytest.approx(2.0 * (-1.0 - 0.5 - 3.0))  # -9; 4 of 6 clipped: no decay
    np.testing.assert_allclose(gx, [0.5, 0.5, 0.0, 0.0, 0.0, -0.5])
    inside = jnp.linspace(-1.8, 1.8, 100, dtype=jnp.float32)
    gb_in = jax.grad(lambda b: jnp.sum(ibm_dac(inside, b, jnp.float32(100), 254, 0.0, 0.95) * sg(b)))(b)
    assert float(gb_in) == 0.0  # no clipping, no decay: the quantisation error gives the range nothing
    x2, g2 = jnp.append(inside, 20.0), jnp.append(jnp.ones(100, jnp.float32), -0.25)
    gb2 = jax.grad(lambda b: jnp.sum(ibm_dac(x2, b, jnp.float32(101), 254, 0.01, 0.95) * sg(b) * g2))(b)
    assert float(gb2) == pytest.approx(2.0 * -0.25 + 0.01 * 2.0)  # 100/101 inside: the decay acts
    # broadcast ranges (the batched kernel): each range sums its own inputs; padding excluded by count
    xs = jnp.stack([x, -x])[:, None, :]  # (2, 1, 6) inputs of two blocks, each seen by 3 ranges
    bs = jnp.full((2, 3, 1), 2.0, jnp.float32)
    gbs = jax.grad(
        lambda bs: jnp.sum(ibm_dac(xs, bs, jnp.full((2, 1, 1), 6.0), 254, 0.0, 0.95) * sg(bs) * g[None, None])
    )(bs)
    np.testing.assert_allclose(gbs[0, :, 0], -9.0)
    # -x: upper 4 (g +3: ignored); lower -3 (g -1: ignored), -5 (g +2: counts), -2 (g -0.5: ignored)
    np.testing.assert_allclose(gbs[1, :, 0], 2.0 * -2.0)


def test_ibm_dac_matches_aihwkit_lightning_input_range_backward():
    torch = pytest.importorskip("torch")
    lightning = pytest.importorskip("aihwkit_lightning.nn.modules.torch_utils.torch_linear")
    from aimc_jax.tile._quant import ibm_dac

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(500) * 1.2).astype(np.float32)
    g = rng.standard_normal(500).astype(np.float32)
    for beta, decay in ((1.0, 0.01), (3.5, 0.01)):  # ~40 % clipped; all but ~0.4 % inside (decay acts)
        xt, bt = torch.tensor(x, requires_grad=True), torch.tensor(beta, requires_grad=True)
        up, lo = xt >= bt, xt <= -bt
        xc = lightning.StraightThroughClamp.apply(xt, up, lo, bt)
        out = lightning.InputRangeForward.apply(xc, bt, up, lo, decay, 0.95)
        (out * torch.tensor(g)).sum().backward()
        gx, gb = jax.grad(
            lambda x, b, d=decay: jnp.sum(
                ibm_dac(x, b, jnp.float32(x.size), 254, d, 0.95) * jax.lax.stop_gradient(b) * g
            ),
            argnums=(0, 1),
        )(jnp.asarray(x), jnp.float32(beta))
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6, atol=1e-7)
        assert float(gb) == pytest.approx(float(bt.grad), rel=1e-5)


def test_full_hwa_ibm_rule_gives_the_range_only_the_clipped_inputs_gradient():
    tile = aj.TileConfig()
    for beta, sign in ((100.0, 0), (0.5, -1)):
        grads = {}
        for rule in ("ibm", "lsq"):
            layer, v = _layer(
                HWAConfig(range_rule=rule, range_decay=0.0), tile, W, B, np.full((2, 1), beta, np.float32)
            )
            loss = lambda p, layer=layer: jnp.mean(layer.apply({"params": p}, X, rngs={"hwa": jax.random.key(0)}) ** 2)  # noqa: E731
            grads[rule] = np.asarray(jax.grad(loss)(v["params"])["input_range"])
        assert np.all(grads["lsq"] != 0)  # LSQ: quantisation error and output noise move the range
        if sign == 0:
            assert np.all(grads["ibm"] == 0)  # nothing clipped: IBM's rule gives nothing
        else:
            assert np.all(grads["ibm"] < 0)  # ~30 % clipped: it only ever widens
    v = _layer(HWAConfig(), tile, W, B, np.full((2, 1), 3.0, np.float32))[1]
    a = HWADense(300, hwa=HWAConfig(), tile_config=tile).apply(v, X, rngs={"hwa": jax.random.key(0)})
    b = HWADense(300, hwa=HWAConfig(range_rule="lsq"), tile_config=tile).apply(v, X, rngs={"hwa": jax.random.key(0)})
    np.testing.assert_array_equal(a, b)  # the same forward
    with pytest.raises(ValueError, match="range_rule"):
        HWAConfig(range_rule="adam")


@pytest.mark.parametrize("scan", [False, True])
def test_ibm_ranges_initialise_from_the_first_training_batches(scan):
    from aimc_jax.data import task_spec
    from aimc_jax.training import make_train_step

    module, variables = tiny_encoder(2, vocab_size=99)
    module = module.clone(config=module.config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    cfg = aj.TileConfig()
    hwa = HWAConfig(init_from_data=2)
    hwa_module = Encoder(module.config, dense=hwa_dense_factory(hwa, cfg))
    v = add_input_ranges(variables, aj.init_model_ranges(variables, cfg))  # beta = 3.0, replaced at step 0
    tx = optax.sgd(0.0)  # no update: only the data initialisation moves the ranges
    step = jax.jit(make_train_step(hwa_module, v, task_spec("SST-2"), tx, scan_layers=scan))
    b0, b1 = _step_batch(99), _step_batch(99, length=6)
    query = ("encoder", "layer_0", "attention", "self", "query", "input_range")

    def first(params):
        p = params
        for k in query:
            p = p[k]
        return np.asarray(p)

    def emb_std(batch):  # the first layer's input: the embeddings, before any HWA layer
        inputs = aj.collect_layer_inputs(module, variables, [batch])
        return float(np.std(inputs["encoder/layer_0/attention/self/query"], ddof=1))

    params, state = v["params"], tx.init(v["params"])
    untouched = step(params, state, b0, jax.random.key(0))[0]  # no index: no initialisation
    np.testing.assert_array_equal(first(untouched), 3.0)
    p0 = step(params, state, b0, jax.random.key(0), jnp.int32(0))[0]
    np.testing.assert_allclose(first(p0), 3 * emb_std(b0), rtol=1e-5)
    p1 = step(p0, state, b1, jax.random.key(1), jnp.int32(1))[0]
    np.testing.assert_allclose(first(p1), (3 * emb_std(b0) + 3 * emb_std(b1)) / 2, rtol=1e-5)
    p2 = step(p1, state, b0, jax.random.key(2), jnp.int32(2))[0]  # init_from_data = 2 steps: done
    for a, b in zip(jax.tree.leaves(p2), jax.tree.leaves(p1), strict=True):
        np.testing.assert_array_equal(a, b)
    every = [np.asarray(x) for k, x in jax.tree_util.tree_flatten_with_path(p0)[0] if "input_range" in str(k[-1])]
    assert len(every) == 14 and all(np.all(r != 3.0) and np.all(r > 0) for r in every)


def test_reduced_hwa_weight_noise_is_relative_to_the_channel_max():
    hwa = HWAConfig(mode="reduced", weight_noise=0.03)
    layer, v = _layer(hwa, aj.TileConfig(), W, np.zeros(300, np.float32))
    one_hot = np.eye(700, dtype=np.float32)[:1]
    draws = np.stack([np.asarray(layer.apply(v, one_hot, rngs={"hwa": jax.random.key(i)}))[0] for i in range(400)])
    measured = (draws - W[0]).std(axis=0)
    expected = 0.03 * np.abs(W).max(axis=0)
    assert np.median(measured / expected) == pytest.approx(1.0, abs=0.05)


def test_clipping_and_range_params_round_trip():
    _, variables = tiny_encoder(2, vocab_size=99)
    clipped = clip_weights(variables["params"], 2.5)
    k = np.asarray(clipped["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"])
    k0 = np.asarray(variables["params"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"])
    assert np.all(np.abs(k) <= 2.5 * k0.std(axis=0) + 1e-7) and np.any(k != k0)
    emb = "word_embeddings"
    np.testing.assert_array_equal(
        clipped["embeddings"][emb]["embedding"], variables["params"]["embeddings"][emb]["embedding"]
    )
    config = aj.TileConfig()
    ranges = {n: r.replace(input=r.input * 0 + 1.7) for n, r in aj.init_model_ranges(variables, config).items()}
    with_ranges = add_input_ranges(variables, ranges)
    plain, learned = split_hwa_variables(with_ranges, config)
    assert jax.tree.structure(plain) == jax.tree.structure(variables)
    assert set(learned) == set(ranges) and all(float(r.input.mean()) == pytest.approx(1.7) for r in learned.values())
    with pytest.raises(ValueError, match="mode"):
        HWAConfig(mode="half")
    assert HWAConfig(mode="reduced", range_learning_rate=1.0).settings() == {"mode": "reduced", "weight_noise": 0.02}


def test_hwa_finetuning_runs_and_its_ranges_start_pt():
    module, variables = tiny_encoder(2, vocab_size=99)
    config = aj.TileConfig()
    hwa = HWAConfig(range_learning_rate=0.05)
    hwa_module = Encoder(module.config, dense=hwa_dense_factory(hwa, config))
    start = aj.init_model_ranges(variables, config)
    v = add_input_ranges(variables, start)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, (64, 10)).astype(np.int32)
    from aimc_jax.data import Encoded

    enc = Encoded([r for r in ids], [np.zeros(10, np.int32)] * 64, (ids[:, 1] > 50).astype(np.int32), 0)
    tuned, info = finetune(
        hwa_module, v, enc, "SST-2", FinetuneConfig(learning_rate=1e-3, epochs=2, batch_size=16), progress=False,
        project=lambda p: clip_weights(p, 2.5),
        optimizer=lambda cfg, total: optax.adam(1e-3),
    )  # fmt: skip
    assert info["steps"] == 8 and np.isfinite(info["final_loss"])
    plain, learned = split_hwa_variables(tuned, config)
    moved = [float(jnp.abs(learned[n].input - start[n].input).max()) for n in learned]
    assert max(moved) > 0
    obj = pt.distillation_objective(module, plain, config, t=3600.0)
    batch = {
        "input_ids": ids[:16],
        "attention_mask": np.ones((16, 10), np.int32),
        "token_type_ids": np.zeros((16, 10), np.int32),
    }
    res = pt.optimize_ranges(obj, learned, [batch], optax.adam(0.01), steps=2, key=jax.random.key(0), progress=False)
    assert np.all(np.isfinite(res.losses))


def test_log_space_ranges_move_relatively_and_stay_positive():
    # Adam's first step is ~ +/- lr in log space whatever the gradient's size: a range
    # of 10 and one of 0.01 both move by ~5 %, and a huge gradient cannot make one <= 0.
    params = {"w": jnp.array([1.0, -2.0]), "beta": jnp.array([10.0, 0.01, 1.0])}
    grads = {"w": jnp.array([1.0, 1.0]), "beta": jnp.array([-3.0, 1e6, 1e-3])}
    labels = {"w": "weights", "beta": "ranges"}
    tx = optax.multi_transform({"weights": optax.sgd(0.1), "ranges": log_space(optax.adam(0.05))}, labels)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["w"], [0.9, -2.1], rtol=1e-6)
    np.testing.assert_allclose(new["beta"] / params["beta"], np.exp([0.05, -0.05, -0.05]), rtol=1e-4)
    tx = range_optimizer(HWAConfig(range_learning_rate=2.0), total_steps=10)
    beta = params["beta"]
    state = tx.init(beta)
    for _ in range(10):
        updates, state = tx.update(jnp.array([1e9, 1e9, 1e9]), state, beta)
        beta = optax.apply_updates(beta, updates)
        assert bool(jnp.all(beta > 0)) and bool(jnp.all(jnp.isfinite(beta)))
    with pytest.raises(ValueError, match="params"):
        log_space(optax.adam(0.1)).update(grads["beta"], optax.adam(0.1).init(params["beta"]))


def _step_batch(vocab, n=8, length=10):
    rng = np.random.default_rng(3)
    return {
        "input_ids": jnp.asarray(rng.integers(5, vocab, (n, length)), jnp.int32),
        "attention_mask": jnp.ones((n, length), jnp.int32),
        "token_type_ids": jnp.zeros((n, length), jnp.int32),
        "labels": jnp.asarray(rng.integers(0, 2, n), jnp.int32),
        "weight": jnp.ones((n,), jnp.float32),
    }


def test_scanned_train_step_equals_unrolled_without_randomness_and_keeps_the_layout():
    from aimc_jax.data import task_spec
    from aimc_jax.training import make_train_step

    module, variables = tiny_encoder(2, vocab_size=99)
    module = module.clone(config=module.config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    tx = optax.adam(1e-3)
    batch, key = _step_batch(99), jax.random.key(0)
    out = {}
    for scan in (False, True):
        step = jax.jit(make_train_step(module, variables, task_spec("SST-2"), tx, scan_layers=scan))
        out[scan] = step(variables["params"], tx.init(variables["params"]), batch, key)
    assert jax.tree.structure(out[True][0]) == jax.tree.structure(variables["params"])  # layer_<i> layout kept
    np.testing.assert_allclose(out[True][2], out[False][2], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(out[True][0]), jax.tree.leaves(out[False][0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["full", "reduced"])
def test_scanned_hwa_step_draws_noise_per_layer(mode):
    from aimc_jax.data import task_spec
    from aimc_jax.training import make_train_step

    module, variables = tiny_encoder(2, vocab_size=99)
    cfg = aj.TileConfig()
    hwa = HWAConfig(mode=mode)
    hwa_module = Encoder(module.config, dense=hwa_dense_factory(hwa, cfg))
    if mode == "full":
        variables = add_input_ranges(variables, aj.init_model_ranges(variables, cfg))
    tx = optax.sgd(0.0)  # no update: compare the noisy losses only
    batch = _step_batch(99)
    step = jax.jit(make_train_step(hwa_module, variables, task_spec("SST-2"), tx, scan_layers=True))
    params, state = variables["params"], tx.init(variables["params"])
    losses = [float(step(params, state, batch, jax.random.key(k))[2]) for k in (0, 0, 1)]
    assert np.isfinite(losses).all() and losses[0] == losses[1] != losses[2]  # seeded, and noisy
