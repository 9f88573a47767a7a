"""Models that are not ours made analog: a linen MLP of `nn.Dense` layers, NNX models through `to_analog`.

Oracles: under the ideal tile the analog forward equals the float model; the noisy
one differs, is reproducible by key and compiles once across calls; PT through optax
changes only the ranges and lowers the loss on held-out chips.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import aimc_jax as aj
from aimc_jax import pt

DEFAULT = aj.TileConfig()
IDEAL = aj.TileConfig.ideal()


class LinenMLP(nn.Module):
    """A user's classifier: plain `nn.Dense`, a 2-D `nn.DenseGeneral` head, a multi-axis `nn.DenseGeneral`."""

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(32)(x))
        heads = nn.DenseGeneral((2, 4), name="heads")(h)  # (in, 2, 4) kernel: stays float
        h = nn.gelu(nn.Dense(32, name="hidden")(h)) + heads.reshape(*h.shape[:-1], 8).sum(-1, keepdims=True)
        return nn.DenseGeneral(3, name="head")(h)


def _numpy_init(module, *args, seed=0):
    """Variables from `jax.eval_shape` + numpy (no compiled flax init)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), jnp.float32), shapes)


@pytest.fixture(scope="module")
def linen_mlp():
    x = np.random.default_rng(1).normal(size=(16, 12)).astype(np.float32)
    module = LinenMLP()
    return module, _numpy_init(module, x), jnp.asarray(x)


def test_linen_dense_layers_are_the_analog_layers(linen_mlp):
    _, variables, _ = linen_mlp
    assert sorted(aj.analog_layers(variables, DEFAULT)) == ["Dense_0", "head", "hidden"]
    assert aj.count_tiles(variables, DEFAULT) == 3
    digital_head = aj.LayerConfigs(overrides=(("head", None),))
    assert sorted(aj.analog_layers(variables, digital_head)) == ["Dense_0", "hidden"]


def test_linen_ideal_analog_equals_float_and_default_is_noisy(linen_mlp):
    module, variables, x = linen_mlp
    fp = module.apply(variables, x)
    calibration = aj.collect_layer_inputs(module, variables, [x[:8], (x[8:],)])
    assert sorted(calibration) == ["Dense_0", "head", "hidden"] and calibration["hidden"].shape == (16, 32)
    ranges = aj.init_model_ranges(variables, IDEAL, calibration=calibration)
    y = aj.analog_forward(module, variables, ranges, x, config=IDEAL, t=0.0, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(y), np.asarray(fp), atol=1e-4)

    ranges = aj.init_model_ranges(variables, DEFAULT, calibration=calibration)
    forward = jax.jit(lambda r, key: aj.analog_forward(module, variables, r, x, config=DEFAULT, t=3600.0, key=key))
    a, b = forward(ranges, jax.random.key(1)), forward(ranges, jax.random.key(1))
    c = forward(jax.tree.map(lambda v: v * 1.01, ranges), jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.abs(np.asarray(a) - np.asarray(fp)).max() > 1e-3
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-4
    assert forward._cache_size() == 1  # interception is traced inside: new keys and ranges reuse the program


def test_linen_program_read_apply_and_a_digital_layer(linen_mlp):
    module, variables, x = linen_mlp
    config = aj.LayerConfigs(default=IDEAL, overrides=(("hidden", None),))
    ranges = aj.init_model_ranges(variables, config)
    chip = aj.program_model(variables, ranges, config, key=jax.random.key(0))
    state = aj.read_model(chip, 1.0, config, key=jax.random.key(1))
    y = aj.analog_apply(module, variables, ranges, state, x, config=config, key=jax.random.key(2))
    np.testing.assert_allclose(np.asarray(y), np.asarray(module.apply(variables, x)), atol=1e-4)
    with pytest.raises(TypeError, match="give the tile config"):
        aj.analog_apply(module, variables, ranges, state, x, key=jax.random.key(2))


def test_linen_multi_axis_dense_general_cannot_run_analog():
    class Bad(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.DenseGeneral(4, axis=-2, name="mix")(x)  # 2-D kernel over the second-last axis

    module, x = Bad(), jnp.ones((2, 3, 5), jnp.float32)
    variables = _numpy_init(module, x)
    ranges = aj.init_model_ranges(variables, DEFAULT)
    with pytest.raises(ValueError, match=r"'mix'.*cannot run analog"):
        aj.analog_forward(module, variables, ranges, x, config=DEFAULT, t=1.0, key=jax.random.key(0))


def _cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_linen_pt_lowers_the_loss_of_bad_ranges(linen_mlp):
    module, variables, x = linen_mlp
    labels = jnp.argmax(module.apply(variables, x), -1)  # the float model's own decisions
    naive = aj.init_model_ranges(variables, DEFAULT)
    bad = {k: r.replace(input=r.input * 0.05) for k, r in naive.items()}  # the DAC clips almost everything

    def loss(ranges, batch, key):
        return _cross_entropy(
            aj.analog_forward(module, variables, ranges, batch, config=DEFAULT, t=3600.0, key=key), labels
        )

    _assert_pt_improves(loss, bad, x)


def _assert_pt_improves(objective, bad, x):
    """40 PT steps from `bad` ranges lower the mean loss of 4 held-out chips by 30 %; only the ranges change."""
    result = pt.optimize_ranges(
        objective, bad, [x], optax.adam, learning_rate=0.1, steps=40, key=jax.random.key(0), progress=False
    )
    held_out = jax.random.split(jax.random.key(99), 4)
    score = jax.jit(lambda r: jax.vmap(lambda k: objective(r, x, k))(held_out).mean())
    before, after = float(score(bad)), float(score(result.ranges))
    assert after < 0.7 * before, (before, after)
    assert set(result.ranges) == set(bad)


class NNXBlock(nnx.Module):
    """A ViT-style pre-norm block written with `nnx.Linear` (single-head attention, MLP)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.norm1, self.norm2 = nnx.LayerNorm(dim, rngs=rngs), nnx.LayerNorm(dim, rngs=rngs)
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, rngs=rngs)
        self.fc1, self.fc2 = nnx.Linear(dim, 2 * dim, rngs=rngs), nnx.Linear(2 * dim, dim, rngs=rngs)

    def __call__(self, x):
        q, k, v = jnp.split(self.qkv(self.norm1(x)), 3, axis=-1)
        attention = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]), axis=-1)
        x = x + self.proj(attention @ v)
        return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x))))


class NNXClassifier(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs, dim: int = 16):
        self.embed = nnx.Linear(6, dim, rngs=rngs)
        self.blocks = nnx.List([NNXBlock(dim, rngs=rngs) for _ in range(2)])
        self.head = nnx.Linear(dim, 3, rngs=rngs)

    def __call__(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(axis=-2))


@pytest.fixture(scope="module")
def nnx_model():
    model = NNXClassifier(rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(8, 5, 6)), jnp.float32)
    return model, x


def test_to_analog_swaps_the_selected_linear_layers(nnx_model):
    model, x = nnx_model
    analog = to_analog_blocks(model)
    assert isinstance(model.blocks[0].qkv, nnx.Linear)  # the given model is untouched
    assert isinstance(analog.blocks[0].qkv, aj.AnalogLinear) and isinstance(analog.head, nnx.Linear)
    _, params = nnx.split(analog, nnx.Param)  # AnalogKernel is an nnx.Param: every weight is still a Param
    names = sorted(aj.analog_layers(params, DEFAULT))
    assert names == [f"blocks/{i}/{n}" for i in range(2) for n in ("fc1", "fc2", "proj", "qkv")]
    np.testing.assert_allclose(np.asarray(analog(x)), np.asarray(model(x)), atol=1e-5)  # float outside analog_apply
    with pytest.raises(ValueError, match=r"no nnx\.Linear matches"):
        aj.to_analog(model, include="block/*")
    with pytest.raises(TypeError, match=r"nnx\.Module"):
        aj.to_analog({"kernel": 1})


def to_analog_blocks(model):
    return aj.to_analog(model, include="blocks/*")


def test_nnx_ideal_equals_float_noisy_compiles_once(nnx_model):
    model, x = nnx_model
    analog = to_analog_blocks(model)
    graphdef, params = nnx.split(analog)
    calibration = aj.collect_layer_inputs(analog, None, [x])
    assert calibration["blocks/1/fc2"].shape == (40, 32)
    ranges = aj.init_model_ranges(params, IDEAL, calibration=calibration)
    y = aj.analog_forward(graphdef, params, ranges, x, config=IDEAL, t=0.0, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(y), np.asarray(model(x)), atol=1e-4)

    ranges = aj.init_model_ranges(params, DEFAULT, calibration=calibration)
    chip = aj.program_model(params, ranges, DEFAULT, key=jax.random.key(1))
    state = aj.read_model(chip, 86400.0, DEFAULT, key=jax.random.key(2))
    apply = jax.jit(lambda p, r, s, key: aj.analog_apply(graphdef, p, r, s, x, config=DEFAULT, key=key))
    a, b = apply(params, ranges, state, jax.random.key(3)), apply(params, ranges, state, jax.random.key(3))
    c = apply(params, ranges, state, jax.random.key(4))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-4
    assert np.abs(np.asarray(a) - np.asarray(model(x))).max() > 1e-3
    assert apply._cache_size() == 1


def test_nnx_pt_with_optax_trains_only_the_ranges(nnx_model):
    model, x = nnx_model
    graphdef, params = nnx.split(to_analog_blocks(model))
    labels = jnp.argmax(model(x), -1)
    naive = aj.init_model_ranges(params, DEFAULT)
    bad = {k: r.replace(input=r.input * 0.05) for k, r in naive.items()}

    def fn(ranges, batch, key, frozen):  # the weights arrive as data, never as an optimised leaf
        return _cross_entropy(
            aj.analog_forward(graphdef, frozen, ranges, batch, config=DEFAULT, t=3600.0, key=key), labels
        )

    _assert_pt_improves(pt.Objective(fn, params), bad, x)
