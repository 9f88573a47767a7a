"""Oracle tests of the crossbar tile simulator (REFERENCE §2)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import aimc_jax as aj
from aimc_jax.tile import _pcm

DEFAULT = aj.TileConfig()
IDEAL = aj.TileConfig.ideal()
HOUR, DAY, YEAR = 3600.0, 86400.0, 365 * 86400.0


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def _chip(weight, ranges, config, t, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return aj.read(aj.program(weight, ranges, config, key=k1), t, config, key=k2)


def _run(weight, ranges, x, config, t=0.0, seed=0):
    state = _chip(weight, ranges, config, t, seed)
    return aj.mvm(state, ranges, x, config, key=jax.random.key(seed + 1000))


def _unit_ranges(weight, config, beta=1.0):
    r = aj.init_ranges(weight, config)
    return r.replace(column=jnp.ones_like(r.column), input=jnp.full_like(r.input, beta))


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("n", "sizes"),
    [(384, (384,)), (512, (512,)), (768, (384, 384)), (1536, (512,) * 3), (3072, (512,) * 6), (1001, (501, 500))],
)
def test_tile_layout_splits_near_equally(n, sizes):
    layout = aj.tile_layout(n, n, DEFAULT)
    assert layout.in_sizes == sizes and layout.out_sizes == sizes
    assert layout.n_tiles == len(sizes) ** 2


def test_tile_layout_respects_config_sizes():
    layout = aj.tile_layout(768, 3072, aj.TileConfig(max_input_size=256, max_output_size=1024))
    assert layout.in_sizes == (256, 256, 256) and layout.out_sizes == (1024, 1024, 1024)


def test_block_layout_round_trips_and_pads_with_zeros():
    from aimc_jax.tile._layout import from_blocks, to_blocks, valid_mask

    w = np.random.default_rng(0).normal(size=(1001, 700)).astype(np.float32)
    layout = aj.tile_layout(1001, 700, DEFAULT)
    blocks = np.asarray(to_blocks(jnp.asarray(w), layout))
    assert blocks.shape == (2, 2, 501, 350)
    assert np.all(blocks[~valid_mask(layout)] == 0)  # the missing row of the second input block
    np.testing.assert_array_equal(np.asarray(from_blocks(jnp.asarray(blocks), layout)), w)


# ---------------------------------------------------------------- ideal oracle


@pytest.mark.parametrize(("n_in", "n_out"), [(768, 3072), (3072, 768), (1001, 700), (37, 5)])
def test_ideal_mvm_equals_matmul(n_in, n_out):
    rng = np.random.default_rng(n_in)
    w = rng.normal(size=(n_in, n_out)).astype(np.float32) / math.sqrt(n_in)
    x = rng.normal(size=(2, 3, n_in)).astype(np.float32)
    ranges = aj.init_ranges(w, IDEAL)
    ranges = ranges.replace(input=jnp.full_like(ranges.input, 0.25))  # far inside |x|: an ideal DAC must not clip
    y = _run(w, ranges, x, IDEAL)
    assert y.shape == (2, 3, n_out) and y.dtype == jnp.float32
    assert _rel_err(y, x.astype(np.float64) @ w.astype(np.float64)) < 1e-5


def test_dac_clips_at_the_input_range():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(64, 16)).astype(np.float32)
    x = rng.normal(size=(32, 64)).astype(np.float32)
    cfg = aj.TileConfig.ideal(inp_clip=True)
    ranges = aj.init_ranges(w, cfg).replace(input=jnp.full((1, 1), 0.5, jnp.float32))
    y = _run(w, ranges, x, cfg)
    assert _rel_err(y, np.clip(x, -0.5, 0.5).astype(np.float64) @ w.astype(np.float64)) < 1e-5
    assert _rel_err(y, x.astype(np.float64) @ w.astype(np.float64)) > 0.1
    assert aj.TileConfig().inp_clip and not IDEAL.inp_clip


def test_tiled_equals_one_big_crossbar():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(1300, 1100)).astype(np.float32)
    x = rng.normal(size=(16, 1300)).astype(np.float32)
    big = aj.TileConfig.ideal(max_input_size=4096, max_output_size=4096)
    outs = []
    for cfg in (IDEAL, big):
        ranges = aj.init_ranges(w, cfg)
        ranges = ranges.replace(input=jnp.full_like(ranges.input, np.abs(x).max()))
        outs.append(_run(w, ranges, x, cfg))
    assert aj.tile_layout(1300, 1100, IDEAL).n_tiles == 9
    assert _rel_err(outs[0], outs[1]) < 1e-5


# ---------------------------------------------------------------- crossbar kernels

# (in, out, max_input_size, max_output_size): uneven input and output splits, one crossbar, many
_KERNEL_SHAPES = [(37, 5, 20, 512), (1001, 700, 512, 512), (300, 1100, 128, 512), (64, 48, 512, 512)]


def _kernel_outputs(w, ranges, x, config, *, t=HOUR, seed=0):
    """mvm of one chip under each explicit kernel: {kernel: (..., out)}."""
    outs = {}
    for kernel in ("unrolled", "batched"):
        cfg = config.replace(crossbar_kernel=kernel)
        outs[kernel] = np.asarray(_run(w, ranges, x, cfg, t=t, seed=seed))
    return outs


def _kernel_setup(n_in, n_out, max_in, max_out, config, seed=0):
    config = config.replace(max_input_size=max_in, max_output_size=max_out)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_in, n_out)).astype(np.float32) / math.sqrt(n_in)
    x = rng.normal(size=(3, 7, n_in)).astype(np.float32)
    return w, x, aj.init_ranges(w, config, inputs=x), config


def _assert_equal_but_rare_adc_flips(a, b, ranges, config):
    """Equal within 1e-5 of the output scale except rare ADC-step flips from float summation order."""
    scale = np.abs(b).max()
    diff = np.abs(a - b) / scale
    out_bound = config.out_bound if ranges.output is None else np.asarray(ranges.output).max()
    step = 2 * float(out_bound) / config.out_res if config.out_res else 0.0
    back_scale = float(np.asarray(ranges.input).max() * np.asarray(ranges.column).max())
    assert np.mean(diff > 1e-5) <= 1e-3
    assert diff.max() <= max(2 * step * back_scale * 1.01 / scale, 1e-5)


@pytest.mark.parametrize("shape", _KERNEL_SHAPES)
def test_batched_kernel_equals_unrolled_ideal(shape):
    w, x, ranges, cfg = _kernel_setup(*shape, IDEAL)
    outs = _kernel_outputs(w, ranges, x, cfg)
    assert outs["batched"].shape == (3, 7, shape[1])
    np.testing.assert_allclose(outs["batched"], outs["unrolled"], rtol=1e-5, atol=1e-5 * np.abs(outs["unrolled"]).max())
    assert _rel_err(outs["batched"], x.astype(np.float64) @ w.astype(np.float64)) < 1e-5


@pytest.mark.parametrize(
    ("shape", "variant"),
    [(shape, "default") for shape in _KERNEL_SHAPES]
    + [
        (shape, variant)
        for shape in (_KERNEL_SHAPES[0], _KERNEL_SHAPES[2])
        for variant in ("adc_bounds", "scalar_adc_bound", "no_adc_grid", "no_dac_grid", "jax_prng")
    ],
)
def test_batched_kernel_equals_unrolled_default(shape, variant):
    base = {"no_adc_grid": DEFAULT.replace(out_res=None), "no_dac_grid": DEFAULT.replace(inp_res=None)}
    base["jax_prng"] = DEFAULT.replace(noise_prng="jax")
    w, x, ranges, cfg = _kernel_setup(*shape, base.get(variant, DEFAULT))
    if variant == "adc_bounds":  # per-crossbar ADC bounds, tight enough to clip
        ranges = ranges.replace(output=jnp.linspace(1.0, 3.0, ranges.input.size).reshape(ranges.input.shape))
    if variant == "scalar_adc_bound":
        ranges = ranges.replace(output=jnp.asarray(2.0, jnp.float32))
    outs = _kernel_outputs(w, ranges, x, cfg)
    _assert_equal_but_rare_adc_flips(outs["batched"], outs["unrolled"], ranges, cfg)
    # the noise was on: another key gives other outputs
    other = np.asarray(_run(w, ranges, x, cfg.replace(crossbar_kernel="batched"), t=HOUR, seed=1))
    assert not np.allclose(other, outs["batched"])


def test_batched_kernel_draws_the_unrolled_output_noise():
    # output noise alone (zero weights, no ADC): the draws themselves must agree
    cfg = aj.TileConfig.ideal(out_noise=0.04, max_input_size=20, max_output_size=7)
    w = np.zeros((37, 19), np.float32)
    x = np.zeros((5, 37), np.float32)
    outs = _kernel_outputs(w, _unit_ranges(w, cfg), x, cfg)
    assert np.abs(outs["unrolled"]).min() > 0
    np.testing.assert_allclose(outs["batched"], outs["unrolled"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(37, 5, 20, 512), (1001, 700, 512, 512), (300, 1100, 128, 512)])
@pytest.mark.parametrize("with_output", [False, True])
def test_batched_kernel_gradients_equal_unrolled(shape, with_output):
    w, x, ranges, cfg = _kernel_setup(*shape, DEFAULT)
    if with_output:
        ranges = ranges.replace(output=jnp.full_like(ranges.input, 3.0))
    target = x @ w

    def loss(r, c):
        return jnp.mean((_forward(w, r, x, jax.random.key(0), config=c) - target) ** 2)

    grads = {k: jax.grad(loss)(ranges, cfg.replace(crossbar_kernel=k)) for k in ("unrolled", "batched")}
    names = ("column", "input", "output") if with_output else ("column", "input")
    for name in names:
        gu, gb = (np.asarray(getattr(grads[k], name)) for k in ("unrolled", "batched"))
        assert np.abs(gu).max() > 0, name
        np.testing.assert_allclose(gb, gu, rtol=1e-4, atol=1e-4 * np.abs(gu).max(), err_msg=name)
    if not with_output:
        assert grads["batched"].output is None


def test_batched_kernel_vmaps_over_keys():
    w, x, ranges, cfg = _kernel_setup(130, 290, 64, 128, DEFAULT)  # 3 x 3 crossbars, both splits uneven
    keys = jax.random.split(jax.random.key(7), 3)
    looped = []
    for kernel in ("unrolled", "batched"):
        c = cfg.replace(crossbar_kernel=kernel)
        f = jax.jit(lambda k, c=c: _forward(w, ranges, x, k, config=c))
        looped.append(np.stack([np.asarray(f(k)) for k in keys]))
        if kernel == "batched":
            batched = np.asarray(jax.vmap(f)(keys))
    _assert_equal_but_rare_adc_flips(batched, looped[1], ranges, cfg)
    _assert_equal_but_rare_adc_flips(batched, looped[0], ranges, cfg)


def test_auto_kernel_is_unrolled_on_cpu():
    from aimc_jax.tile._mvm import resolve_crossbar_kernel

    if jax.default_backend() != "cpu":
        pytest.skip("the CPU choice of 'auto'")
    assert DEFAULT.crossbar_kernel == "auto"
    assert resolve_crossbar_kernel(DEFAULT) == "unrolled"
    assert resolve_crossbar_kernel(DEFAULT.replace(crossbar_kernel="batched")) == "batched"
    w, x, ranges, cfg = _kernel_setup(1001, 700, 512, 512, DEFAULT)
    auto = np.asarray(_run(w, ranges, x, cfg, t=HOUR))
    assert np.array_equal(auto, _kernel_outputs(w, ranges, x, cfg)["unrolled"])


def test_crossbar_kernel_is_in_eq_and_hash_not_in_repr():
    batched = DEFAULT.replace(crossbar_kernel="batched")
    assert batched != DEFAULT and hash(batched) != hash(DEFAULT)  # jit compiles each kernel
    assert repr(batched) == repr(DEFAULT)  # results caches key on repr: the kernel does not change results


# ---------------------------------------------------------------- DAC / ADC grids


def test_dac_alone_lies_on_its_grid():
    cfg = aj.TileConfig.ideal(inp_res=254, inp_clip=True)
    n, beta = 300, 1.7
    eye = np.eye(n, dtype=np.float32)
    x = np.random.default_rng(2).normal(size=(64, n)).astype(np.float32) * 1.5
    y = np.asarray(_run(eye, _unit_ranges(eye, cfg, beta), x, cfg))
    k = y / beta * 127
    assert np.abs(k - np.round(k)).max() < 1e-4
    assert np.abs(y).max() <= beta * (1 + 1e-6)
    assert np.abs(y - np.clip(x, -beta, beta)).max() <= beta / 254 * (1 + 1e-5)  # round to nearest
    assert (np.abs(x) > beta).any()  # clipping was exercised


def test_adc_alone_lies_on_its_grid():
    cfg = aj.TileConfig.ideal(out_res=254, out_bound=10.0)
    ones = np.ones((64, 8), np.float32)
    x = np.random.default_rng(3).normal(size=(256, 64)).astype(np.float32) * 3.0
    beta = 4.0
    y = np.asarray(_run(ones, _unit_ranges(ones, cfg, beta), x, cfg))
    yn = y / beta  # the normalised ADC output (gamma = 1, alpha = 1)
    k = yn / (20 / 254)
    assert np.abs(k - np.round(k)).max() < 1e-3
    assert np.abs(yn).max() <= 10 + 1e-5
    exact = (x / beta).sum(-1, keepdims=True)  # the ideal DAC does not clip
    assert (np.abs(exact) > 10).any()  # clipping was exercised
    inside = np.abs(exact[:, 0]) < 10
    assert np.abs(yn - exact)[inside].max() <= 10 / 254 * (1 + 1e-4)


# ---------------------------------------------------------------- noise statistics


def _const_chip(r, config, seed=0):
    w = np.full((512, 512), r, np.float32)
    return aj.program(w, _unit_ranges(w, config), config, key=jax.random.key(seed))


@pytest.mark.parametrize("r", [0.2, 0.5, 1.0])
def test_programming_noise_sigma(r):
    chip = _const_chip(r, DEFAULT)
    g = np.asarray(chip.g_plus).ravel()
    g_t = r * 25.0
    sigma = float(_pcm.prog_sigma(g_t, 25.0))
    assert g.size >= 1e5
    assert abs(g.mean() - g_t) < 0.01 * sigma * 10
    assert abs(g.std() / sigma - 1) < 0.02
    # the unused device of the pair: max(0, sigma(0) N)
    gm = np.asarray(chip.g_minus).ravel()
    assert abs(gm.mean() / (0.26348 * stats.norm.pdf(0)) - 1) < 0.02


def test_programming_noise_magnitudes_match_reference():
    assert abs(float(_pcm.prog_sigma(25.0, 25.0)) / 25.0 - 0.042) < 0.001
    assert abs(float(_pcm.prog_sigma(0.0, 25.0)) / 25.0 - 0.0105) < 0.001


@pytest.mark.parametrize("r", [1.0, 0.3, 0.05])
def test_drift_exponent_statistics(r):
    chip = _const_chip(r, DEFAULT, seed=1)
    mu = float(np.clip(-0.0155 * np.log(r) + 0.0244, 0.049, 0.1))
    sd = float(np.clip(-0.0125 * np.log(r) - 0.0059, 0.008, 0.045))
    folded = stats.foldnorm(mu / sd, scale=sd)
    for nu in (np.asarray(chip.nu_plus).ravel(),):
        assert abs(nu.mean() / folded.mean() - 1) < 0.01
        assert abs(nu.std() / folded.std() - 1) < 0.02
    nu0 = np.asarray(chip.nu_minus).ravel()  # target 0: g_rel = tiny -> mu 0.1, sigma 0.045
    folded0 = stats.foldnorm(0.1 / 0.045, scale=0.045)
    assert abs(nu0.mean() / folded0.mean() - 1) < 0.01


@pytest.mark.parametrize(("t", "expected"), [(HOUR, 0.773), (DAY, 0.662), (YEAR, 0.498)])
def test_mean_drift_factor(t, expected):
    chip = _const_chip(1.0, DEFAULT, seed=2)
    nu = np.asarray(chip.nu_plus).ravel()
    sampled = np.asarray(_pcm.drift_factor(nu, t, 20.0)).mean()
    folded = stats.foldnorm(0.049 / 0.008, scale=0.008)
    exact = folded.expect(lambda v: ((t + 20.0) / 20.0) ** (-v))
    assert abs(sampled / exact - 1) < 0.002
    # aihwkit 1.2.0 read-out oracle (W = c, one-hot, ideal periphery, no compensation)
    cfg = dataclasses.replace(DEFAULT, inp_res=None, out_res=None, out_bound=None, out_noise=0.0)
    cfg = cfg.replace(drift_compensation=False)
    mean, _ = _readout(cfg, t)
    assert abs(mean - expected) < 0.01


def _readout(cfg, t, c=0.3, seed=3):
    """Mean and std / c of a one-hot read-out of constant weights W = c (g = g_max)."""
    w = np.full((512, 512), c, np.float32)
    ranges = aj.init_ranges(w, cfg).replace(input=jnp.ones((1, 1), jnp.float32))
    y = np.asarray(_run(w, ranges, np.eye(512, dtype=np.float32), cfg, t=t, seed=seed))
    return float(y.mean()) / c, float(y.std()) / c


@pytest.mark.parametrize(("t", "expected"), [(1.0, 0.037), (DAY, 0.045)])
def test_read_noise_sigma(t, expected):
    cfg = aj.TileConfig(prog_noise_scale=0.0, drift_scale=0.0)
    w = np.full((512, 512), 1.0, np.float32)
    state = _chip(w, _unit_ranges(w, cfg), cfg, t)
    rel = np.asarray(state.weights).ravel() - 1.0
    formula = float(_pcm.read_noise_q(25.0, 25.0) * _pcm.read_noise_time_factor(t, 20.0, 250e-9))
    assert abs(rel.std() / formula - 1) < 0.02
    assert abs(formula - expected) < 0.001
    assert abs(rel.mean()) < 1e-3


def test_drift_compensation_restores_mean_readout():
    cfg = aj.TileConfig(inp_res=None, out_res=None, out_bound=None, out_noise=0.0)
    at_programming, _ = _readout(cfg.replace(drift_scale=0.0, read_noise_scale=0.0), 0.0)
    for t, std_oracle in ((1.0, 0.059), (YEAR, 0.133)):
        mean, std = _readout(cfg, t)
        assert abs(mean / at_programming - 1) < 0.02
        assert abs(mean - 0.996) < 0.01  # aihwkit 1.2.0 oracle
        assert abs(std / std_oracle - 1) < 0.1


def test_output_noise_sigma():
    cfg = aj.TileConfig.ideal(out_noise=0.04)
    w = np.zeros((64, 512), np.float32)
    y = _run(w, _unit_ranges(w, cfg), np.zeros((400, 64), np.float32), cfg)
    assert abs(float(np.asarray(y).std()) / 0.04 - 1) < 0.01


# ---------------------------------------------------------------- per-chip draws: hash and threefry

_N_DEV = 1024  # a 1024 x 1024 layer: 4 crossbars, 2**20 devices per quantity


def _se_mean(v):
    return v.std() / math.sqrt(v.size)


def _se_std(v):
    """Standard error of the sample std (delta method from the sample's 4th central moment)."""
    d = v - v.mean()
    m2, m4 = np.mean(d**2), np.mean(d**4)
    return math.sqrt(max(m4 - m2 * m2, 0.0) / v.size) / (2 * math.sqrt(m2))


def _const_layer_chip(r, config, seed=0):
    w = np.full((_N_DEV, _N_DEV), r, np.float32)
    ranges = _unit_ranges(w, config)
    return w, ranges, aj.program(w, ranges, config, key=jax.random.key(seed))


@pytest.mark.parametrize("prng", ["hash", "jax"])
def test_programmed_conductances_follow_the_formula(prng):
    cfg = DEFAULT.replace(noise_prng=prng)
    _, _, chip = _const_layer_chip(1.0, cfg, seed=11)
    g = np.asarray(chip.g_plus, np.float64).ravel()  # target g_max: sigma_prog ~4.2 % of g_max, no clipping
    sigma = float(_pcm.prog_sigma(25.0, 25.0))
    assert g.size == _N_DEV**2 and abs(sigma / 25.0 - 0.042) < 0.001
    assert abs(g.mean() - 25.0) < 5 * _se_mean(g)
    assert abs(g.std() - sigma) < 5 * _se_std(g)
    # the unused device (target 0): max(0, sigma(0) N), a half-normal with an atom at 0
    gm = np.asarray(chip.g_minus, np.float64).ravel()
    s0 = float(_pcm.prog_sigma(0.0, 25.0))
    assert abs(s0 / 25.0 - 0.0105) < 0.001
    assert abs(gm.mean() - s0 / math.sqrt(2 * math.pi)) < 5 * _se_mean(gm)
    assert abs(gm.std() - s0 * math.sqrt(0.5 - 1 / (2 * math.pi))) < 5 * _se_std(gm)
    assert abs(np.mean(gm == 0) - 0.5) < 5 * 0.5 / _N_DEV


@pytest.mark.parametrize("prng", ["hash", "jax"])
@pytest.mark.parametrize(("t", "expected"), [(1.0, 0.037), (DAY, 0.045)])
def test_read_noise_follows_the_formula(prng, t, expected):
    cfg = aj.TileConfig(prog_noise_scale=0.0, drift_scale=0.0, noise_prng=prng)
    _, _, chip = _const_layer_chip(1.0, cfg)
    state = aj.read(chip, t, cfg, key=jax.random.key(12))
    rel = np.asarray(state.weights, np.float64).ravel() - 1.0  # (g(t) + noise) / g_max - 1 at g = g_max
    sigma = float(_pcm.read_noise_q(25.0, 25.0) * _pcm.read_noise_time_factor(t, 20.0, 250e-9))
    assert abs(sigma - expected) < 0.001
    assert abs(rel.mean()) < 5 * _se_mean(rel)
    assert abs(rel.std() - sigma) < 5 * _se_std(rel)


def test_hash_and_threefry_chips_agree_statistically():
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, size=(_N_DEV, _N_DEV)).astype(np.float32)  # every conductance level
    ranges = _unit_ranges(w, DEFAULT)
    draws = {}
    for prng in ("hash", "jax"):
        cfg = DEFAULT.replace(noise_prng=prng)
        chip = aj.program(w, ranges, cfg, key=jax.random.key(13))
        state = aj.read(chip, DAY, cfg, key=jax.random.key(14))
        draws[prng] = {
            "g_plus": np.asarray(chip.g_plus).ravel(),
            "nu_plus": np.asarray(chip.nu_plus).ravel(),
            "nu_minus": np.asarray(chip.nu_minus).ravel(),
            "weights": np.asarray(state.weights).ravel(),
        }
    for name in draws["hash"]:
        a, b = (draws[p][name].astype(np.float64) for p in ("hash", "jax"))
        assert not np.array_equal(a, b), name  # two different streams
        assert abs(a.mean() - b.mean()) < 5 * math.hypot(_se_mean(a), _se_mean(b)), name
        assert abs(a.std() - b.std()) < 5 * math.hypot(_se_std(a), _se_std(b)), name
        assert stats.ks_2samp(a, b).pvalue > 1e-3, name


@pytest.mark.parametrize("prng", ["hash", "jax"])
def test_draws_of_different_quantities_are_independent(prng):
    # constant weights, so each quantity's spread is its own draw alone; each device keeps its own
    # programmed conductance here, so that a zeroed device reads out zero
    cfg = DEFAULT.replace(noise_prng=prng, programmed_conductances="devices")
    _, _, chip = _const_layer_chip(0.5, cfg, seed=15)
    # each device's standardised read-noise draw: a small read-noise scale, so that max(0, .) never clips,
    # and the other device of the pair zeroed
    scale = 0.01
    read_cfg = cfg.replace(drift_scale=0.0, drift_compensation=False, read_noise_scale=scale)
    g_p, g_m = (np.asarray(g, np.float64).ravel() for g in (chip.g_plus, chip.g_minus))
    zero = jnp.zeros_like(chip.g_plus)
    plus = aj.read(dataclasses.replace(chip, g_minus=zero), DAY, read_cfg, key=jax.random.key(16))
    minus = aj.read(dataclasses.replace(chip, g_plus=zero), DAY, read_cfg, key=jax.random.key(16))
    time_factor = float(_pcm.read_noise_time_factor(DAY, 20.0, 250e-9))

    def standardised(g_final, g_prog):
        sigma = scale * np.asarray(_pcm.read_noise_q(g_prog, 25.0), np.float64) * time_factor * g_prog
        return np.where(g_prog > 0, (g_final - g_prog) / np.where(g_prog > 0, sigma, 1.0), 0.0)

    read_p = standardised(np.asarray(plus.weights, np.float64).ravel() * 25.0, g_p)
    read_m = standardised(-np.asarray(minus.weights, np.float64).ravel() * 25.0, g_m)
    assert abs(read_p.std() - 1) < 0.01 and abs(read_m[g_m > 0].std() - 1) < 0.01
    draws = {
        "prog+": g_p,
        "prog-": g_m,
        "nu+": np.asarray(chip.nu_plus, np.float64).ravel(),
        "nu-": np.asarray(chip.nu_minus, np.float64).ravel(),
        "read+": read_p,
        "read-": read_m,
    }
    names = list(draws)
    bound = 5 / _N_DEV  # 5 standard errors of a correlation of 2**20 independent pairs
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert abs(np.corrcoef(draws[a], draws[b])[0, 1]) < bound, (a, b)
        # neighbouring devices along a column (the block layout's row-major neighbours are along a row)
        v = draws[a].reshape(_N_DEV, _N_DEV)
        assert abs(np.corrcoef(v[:-1].ravel(), v[1:].ravel())[0, 1]) < bound, a


@pytest.mark.parametrize("prng", ["hash", "jax"])
def test_program_and_read_vmap_over_keys(prng):
    cfg = DEFAULT.replace(noise_prng=prng)
    w, _x, ranges = _default_setup(n_in=300, n_out=200, n_tok=2)
    keys = jax.random.split(jax.random.key(17), 4)

    def chip_and_state(k):
        k1, k2 = jax.random.split(k)
        chip = aj.program(w, ranges, cfg, key=k1)
        return chip, aj.read(chip, DAY, cfg, key=k2)

    batched = jax.vmap(chip_and_state)(keys)
    for i, k in enumerate(keys):
        single = chip_and_state(k)
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            # float rounding of the operands' scale where g_t + sigma z (or mu + sigma z) cancels
            # near 0: a few float32 ulps of the larger of 1 and the leaf's scale
            scale = max(float(np.abs(np.asarray(want)).max()), 1.0)
            atol = 4 * float(np.finfo(np.float32).eps) * scale
            np.testing.assert_allclose(np.asarray(got[i]), np.asarray(want), rtol=1e-6, atol=atol)
    assert not np.allclose(np.asarray(batched[0].g_plus[0]), np.asarray(batched[0].g_plus[1]))


# ---------------------------------------------------------------- keys, jit, vmap


def _default_setup(seed=0, n_in=768, n_out=600, n_tok=32):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_in, n_out)).astype(np.float32) * 0.05
    x = rng.normal(size=(n_tok, n_in)).astype(np.float32)
    return w, x, aj.init_ranges(w, DEFAULT, inputs=x)


def _forward(w, ranges, x, key, t=HOUR, config=DEFAULT):
    k1, k2, k3 = jax.random.split(key, 3)
    state = aj.read(aj.program(w, ranges, config, key=k1), t, config, key=k2)
    return aj.mvm(state, ranges, x, config, key=k3)


def test_same_key_is_bit_identical_and_new_key_differs():
    w, x, ranges = _default_setup()
    a = _forward(w, ranges, x, jax.random.key(5))
    b = _forward(w, ranges, x, jax.random.key(5))
    c = _forward(w, ranges, x, jax.random.key(6))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_vmap_over_keys_equals_loop():
    cfg = DEFAULT
    w, x, ranges = _default_setup()
    keys = jax.random.split(jax.random.key(7), 8)
    f = jax.jit(lambda k: _forward(w, ranges, x, k, config=cfg))
    batched = np.asarray(jax.vmap(f)(keys))
    looped = np.stack([np.asarray(f(k)) for k in keys])
    scale = np.abs(looped).max()
    diff = np.abs(batched - looped) / scale
    # identical up to rare single ADC-step flips from summation order
    adc_step = 20 / 254 * float(ranges.input.max() * ranges.column.max()) * 1.1 / scale
    assert np.mean(diff > 1e-5) < 1e-3
    assert diff.max() <= 2 * adc_step


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_cheap_noise_prng_is_reproducible_with_the_right_statistics(impl):
    # rbg-family bits are not vmap-invariant (JAX documents it): only reproducibility
    # per key and the noise statistics are promised for them.
    cfg = aj.TileConfig.ideal(out_noise=0.04, noise_prng=impl)
    w = np.zeros((64, 512), np.float32)
    x = np.zeros((400, 64), np.float32)
    a, b = (np.asarray(_run(w, _unit_ranges(w, cfg), x, cfg, seed=4)) for _ in range(2))
    assert np.array_equal(a, b)
    assert abs(a.std() / 0.04 - 1) < 0.01 and abs(a.mean()) < 1e-3
    c = np.asarray(_run(w, _unit_ranges(w, cfg), x, cfg, seed=5))
    assert abs(np.corrcoef(a.ravel(), c.ravel())[0, 1]) < 0.01


def test_jit_does_not_recompile_for_new_data():
    w, x, ranges = _default_setup()
    f = jax.jit(_forward, static_argnames="config")
    f(w, ranges, x, jax.random.key(0), config=DEFAULT)
    f(w * 1.5, ranges, x + 1, jax.random.key(1), config=DEFAULT)
    assert f._cache_size() == 1
    f(w, ranges, x, jax.random.key(0), config=DEFAULT.replace(out_noise=0.02))
    assert f._cache_size() == 2


def test_time_can_be_traced_and_vmapped():
    w, _x, ranges = _default_setup(n_tok=4)
    times = jnp.array([1.0, HOUR, YEAR], jnp.float32)
    chip = aj.program(w, ranges, DEFAULT, key=jax.random.key(0))
    states = jax.vmap(lambda t: aj.read(chip, t, DEFAULT, key=jax.random.key(1)))(times)
    single = aj.read(chip, YEAR, DEFAULT, key=jax.random.key(1))
    assert _rel_err(states.weights[2], single.weights) < 1e-5


# ---------------------------------------------------------------- gradients


def test_ste_surrogate_gradient_hand_made():
    x = jnp.array([0.31, -0.62, 2.5, -3.0, 0.0], jnp.float32)
    bound, res = 1.0, 4  # grid step 0.5
    g = jax.vmap(jax.grad(lambda b, xi: aj.fake_quantize(xi, b, res)), in_axes=(None, 0))(bound, x)
    u = np.clip(np.asarray(x) / bound, -1, 1)
    q = np.round(u * 2) / 2
    expected = np.where(np.abs(np.asarray(x)) > bound, np.sign(x), q - u)
    np.testing.assert_allclose(np.asarray(g), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g), [0.5 - 0.31, -0.5 + 0.62, 1.0, -1.0, 0.0], atol=1e-6)
    # the input gradient is straight through inside the range, 0 outside
    gx = jax.vmap(jax.grad(lambda xi: aj.fake_quantize(xi, bound, res)))(x)
    np.testing.assert_allclose(np.asarray(gx), [1, 1, 0, 0, 1], atol=1e-6)


def test_mvm_dac_range_gradient_is_the_ste_formula():
    cfg = aj.TileConfig.ideal(inp_res=254, inp_clip=True)
    n, beta = 16, 1.0
    eye = np.eye(n, dtype=np.float32)
    x = np.linspace(-1.6, 1.6, n, dtype=np.float32)[None]
    ranges = _unit_ranges(eye, cfg, beta)
    state = _chip(eye, ranges, cfg, 0.0)

    def out(r, j):
        return aj.mvm(state, r, x, cfg, key=jax.random.key(0))[0, j]

    g = np.array([float(jax.grad(out)(ranges, j).input[0, 0]) for j in range(n)])
    u = np.clip(x[0] / beta, -1, 1)
    expected = np.where(np.abs(x[0]) > beta, np.sign(x[0]), np.round(u * 127) / 127 - u)
    np.testing.assert_allclose(g, expected, atol=1e-5)


def test_gradients_wrt_all_ranges_finite_and_nonzero():
    w, x, ranges = _default_setup(n_tok=16)
    ranges = ranges.replace(output=jnp.full_like(ranges.input, 4.0))
    target = x @ w

    def loss(r):
        return jnp.mean((_forward(w, r, x, jax.random.key(0)) - target) ** 2)

    grads = jax.grad(loss)(ranges)
    for name in ("column", "input", "output"):
        g = np.asarray(getattr(grads, name))
        assert np.all(np.isfinite(g)), name
        assert np.abs(g).max() > 0, name


def test_gradient_is_finite_with_zero_weights():
    w = np.zeros((64, 32), np.float32)
    w[:, 0] = 0.5
    x = np.random.default_rng(0).normal(size=(8, 64)).astype(np.float32)
    ranges = aj.init_ranges(w, DEFAULT, inputs=x)
    grads = jax.grad(lambda r: jnp.sum(_forward(w, r, x, jax.random.key(0)) ** 2))(ranges)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


_FRESH_CONFIGS = {
    "default": DEFAULT,
    "no-compensation": aj.TileConfig(drift_compensation=False),
    "jax-prng": aj.TileConfig(noise_prng="jax"),
    "strong-noise": aj.TileConfig(prog_noise_scale=3.0, read_noise_scale=3.0, drift_scale=2.0),
    "no-drift": aj.TileConfig(drift_scale=0.0),
    "read-noise-only": aj.TileConfig(prog_noise_scale=0.0, drift_scale=0.0),
    "devices": aj.TileConfig(programmed_conductances="devices"),  # the written slope (`_chip_slope`)
    "devices-strong-exact": aj.TileConfig(
        programmed_conductances="devices", drift_readout="exact", prog_noise_scale=3.0, drift_scale=2.0
    ),
}


def _fresh_setup(shape=(300, 700), seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape).astype(np.float32) * 0.05
    w[rng.random(shape) < 0.05] = 0.0  # exact zeros: both devices at target 0
    ranges = aj.init_ranges(w, DEFAULT)
    return jnp.asarray(w), ranges.replace(column=ranges.column * 0.6)  # some weights clip


@pytest.mark.parametrize("name", list(_FRESH_CONFIGS))
@pytest.mark.parametrize("t", [0.0, DAY])
def test_fresh_state_equals_program_then_read_with_the_same_gradient(name, t):
    cfg = _FRESH_CONFIGS[name]
    w, ranges = _fresh_setup()
    k1, k2 = jax.random.split(jax.random.key(5))
    plain = aj.read(aj.program(w, ranges, cfg, key=k1), t, cfg, key=k2)
    fused = aj.fresh_state(w, ranges, t, cfg, key_program=k1, key_read=k2)
    np.testing.assert_allclose(np.asarray(fused.weights), np.asarray(plain.weights), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fused.alpha), np.asarray(plain.alpha), rtol=1e-6)
    cot = jnp.asarray(np.random.default_rng(1).normal(size=plain.weights.shape).astype(np.float32))

    def loss(state_of):  # gradients w.r.t. the column ranges and the weights
        return lambda col, ww: jnp.sum(cot * state_of(ww, ranges.replace(column=col)).weights)

    plain_of = lambda ww, r: aj.read(aj.program(ww, r, cfg, key=k1), t, cfg, key=k2)  # noqa: E731
    fused_of = lambda ww, r: aj.fresh_state(ww, r, t, cfg, key_program=k1, key_read=k2)  # noqa: E731
    g_plain = jax.grad(loss(plain_of), argnums=(0, 1))(ranges.column, w)
    g_fused = jax.grad(loss(fused_of), argnums=(0, 1))(ranges.column, w)
    for a, b in zip(g_fused, g_plain, strict=True):  # equal but on kinks (clip edges of nu's statistics)
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(b).max() > 0
        off = ~np.isclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())
        assert off.sum() <= max(1, 1e-4 * b.size), (off.sum(), b.size)
        np.testing.assert_allclose(a, b, rtol=0.05, atol=1e-3 * np.abs(b).max())


def test_fresh_state_gradient_through_mvm_and_vmap():
    w, ranges = _fresh_setup((200, 96))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(16, 200)).astype(np.float32))
    keys = jax.random.split(jax.random.key(9), 3)

    def loss(r, key, fused):
        k1, k2, k3 = jax.random.split(key, 3)
        if fused:
            state = aj.fresh_state(w, r, HOUR, DEFAULT, key_program=k1, key_read=k2)
        else:
            state = aj.read(aj.program(w, r, DEFAULT, key=k1), HOUR, DEFAULT, key=k2)
        return jnp.mean((aj.mvm(state, r, x, DEFAULT, key=k3) - x @ w) ** 2)

    fused = jax.vmap(jax.grad(lambda k, r: loss(r, k, True), argnums=1), in_axes=(0, None))(keys, ranges)
    for i, key in enumerate(keys):
        plain = jax.grad(loss)(ranges, key, False)
        for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(plain), strict=True):
            b = np.asarray(b)
            np.testing.assert_allclose(np.asarray(a)[i], b, rtol=2e-3, atol=1e-3 * np.abs(b).max())


def test_fresh_state_rejects_bad_input():
    w, ranges = _fresh_setup((64, 32))
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="PRNG key"):
        aj.fresh_state(w, ranges, 1.0, DEFAULT, key_program=None, key_read=key)
    with pytest.raises(ValueError, match="drift time"):
        aj.fresh_state(w, ranges, -1.0, DEFAULT, key_program=key, key_read=key)
    with pytest.raises(ValueError, match="2-D"):
        aj.fresh_state(w[0], ranges, 1.0, DEFAULT, key_program=key, key_read=key)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"inp_res": 1}, "inp_res"),
        ({"out_res": 2.5}, "out_res"),
        ({"prog_noise_scale": -1.0}, "prog_noise_scale"),
        ({"out_noise": -0.1}, "out_noise"),
        ({"out_bound": 0.0}, "out_bound"),
        ({"g_max": float("nan")}, "g_max"),
        ({"max_input_size": 0}, "max_input_size"),
        ({"noise_prng": "mersenne"}, "noise_prng"),
        ({"noise_prng": None}, "noise_prng"),
        ({"inp_clip": 1}, "inp_clip"),
        ({"crossbar_kernel": "gpu"}, "crossbar_kernel"),
        ({"crossbar_kernel": None}, "crossbar_kernel"),
    ],
)
def test_config_rejects_invalid_values(changes, match):
    with pytest.raises(ValueError, match=match):
        aj.TileConfig(**changes)


def test_config_is_hashable_and_keyword_only():
    assert hash(DEFAULT) == hash(aj.TileConfig())
    assert aj.TileConfig.ideal(inp_res=254).inp_res == 254
    with pytest.raises(TypeError):
        aj.TileConfig(512)


def test_bad_inputs_give_clear_errors():
    w, x, ranges = _default_setup(n_tok=2)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"ranges.input must be > 0"):
        aj.program(w, ranges.replace(input=-ranges.input), DEFAULT, key=key)
    with pytest.raises(ValueError, match=r"ranges.column must be > 0"):
        aj.program(w, ranges.replace(column=ranges.column.at[0, 0].set(0.0)), DEFAULT, key=key)
    with pytest.raises(ValueError, match=r"ranges.column has shape"):
        aj.program(w, ranges.replace(column=ranges.column[:, :10]), DEFAULT, key=key)
    bad = w.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="weight contains NaN"):
        aj.program(bad, ranges, DEFAULT, key=key)
    with pytest.raises(ValueError, match="2-D"):
        aj.program(w[0], ranges, DEFAULT, key=key)
    with pytest.raises(TypeError, match="PRNG key"):
        aj.program(w, ranges, DEFAULT, key=None)
    chip = aj.program(w, ranges, DEFAULT, key=key)
    with pytest.raises(ValueError, match="t must be finite and >= 0"):
        aj.read(chip, -1.0, DEFAULT, key=key)
    state = aj.read(chip, 1.0, DEFAULT, key=key)
    with pytest.raises(ValueError, match="last axis"):
        aj.mvm(state, ranges, x[:, :100], DEFAULT, key=key)
    with pytest.raises(ValueError, match="programmed with"):
        aj.mvm(state, ranges.replace(column=ranges.column * 2), x, DEFAULT, key=key)
    with pytest.raises(ValueError, match=r"ranges.output must be > 0"):
        aj.mvm(state, ranges.replace(output=jnp.zeros_like(ranges.input)), x, DEFAULT, key=key)
    with pytest.raises(ValueError, match="inputs have"):
        aj.init_ranges(w, DEFAULT, inputs=x[:, :5])


def test_init_ranges_rules():
    w, x, _ = _default_setup(n_in=768, n_out=16, n_tok=64)
    r = aj.init_ranges(w, DEFAULT)
    np.testing.assert_allclose(np.asarray(r.column), np.abs(w).reshape(2, 384, 16).max(1))
    np.testing.assert_allclose(np.asarray(r.input), 3.0)
    x[:, 400] = 100.0  # an outlier in block 1 does not set its range
    r = aj.init_ranges(w, DEFAULT, inputs=x)
    blocks = x.reshape(64, 2, 384)
    expected = np.minimum(np.abs(blocks).max((0, 2)), 3 * blocks.std((0, 2)))
    np.testing.assert_allclose(np.asarray(r.input)[:, 0], expected, rtol=1e-5)
    assert r.input.shape == (2, 1)


# ---------------------------------------------------------------- output-noise generator


def test_hash_normal_is_finite_for_every_bit_pattern():
    from aimc_jax.tile._rng import bits_to_normal

    # the extremes and their neighbours, plus a dense sweep of the top and bottom ends
    edges = np.concatenate([np.arange(0, 2**16), np.arange(2**32 - 2**16, 2**32)]).astype(np.uint32)
    z = np.asarray(jax.jit(bits_to_normal)(jnp.asarray(edges)))
    assert np.all(np.isfinite(z)) and np.abs(z).max() < 5.3
    assert z[-1] > 5.0 and z[0] < -5.0  # the tails are still reached


def test_hash_normal_is_standard_normal_and_independent():
    from aimc_jax.tile._rng import hash_normal

    key = jax.random.key(3)
    z = np.asarray(hash_normal(key, (500, 400)))
    flat = z.ravel()
    assert abs(flat.mean()) < 0.01 and abs(flat.std() - 1) < 0.01
    assert abs(stats.kurtosis(flat)) < 0.05 and abs(stats.skew(flat)) < 0.03
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:, :-1].ravel(), z[:, 1:].ravel())[0, 1]) < 0.01  # neighbours along a row
    assert abs(np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]) < 0.01  # neighbours along a column
    other = np.asarray(hash_normal(jax.random.fold_in(key, 1), (500, 400)))
    assert abs(np.corrcoef(flat, other.ravel())[0, 1]) < 0.01
    keys = jax.random.split(key, 4)
    batched = jax.vmap(lambda k: hash_normal(k, (64, 3)))(keys)
    assert np.array_equal(np.asarray(batched), np.stack([np.asarray(hash_normal(k, (64, 3))) for k in keys]))


@pytest.mark.parametrize("prng", ["hash", "jax"])
def test_output_noise_generators_have_the_same_statistics(prng):
    cfg = aj.TileConfig.ideal(out_noise=0.04, noise_prng=prng)
    w = np.zeros((700, 600), np.float32)  # 2 x 2 crossbars: noise summed over the 2 input blocks
    y = np.asarray(_run(w, _unit_ranges(w, cfg), np.zeros((300, 700), np.float32), cfg))
    assert abs(y.std() / (0.04 * np.sqrt(2)) - 1) < 0.01
    assert abs(np.corrcoef(y[:, :300].ravel(), y[:, 300:].ravel())[0, 1]) < 0.02
