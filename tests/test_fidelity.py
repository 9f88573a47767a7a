"""Fidelity to aihwkit's semantics (issue 16): conductances re-converted before drift, drift-compensation read-out.

Oracle numbers come from aihwkit 1.2.0 (REFERENCE §2: W = c, one-hot read-out, ideal periphery, with
compensation: std / c = 0.059 at 1 s and 0.133 at 1 year) or from a short derivation in each test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import aimc_jax as aj
from aimc_jax.tile import _pcm

HOUR, DAY, YEAR = 3600.0, 86400.0, 365 * 86400.0
PERIPHERY_IDEAL = dict(inp_res=None, out_res=None, out_bound=None, out_noise=0.0)


def _state(w, ranges, cfg, t, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    chip = aj.program(w, ranges, cfg, key=k1)
    return chip, aj.read(chip, t, cfg, key=k2)


def _unit(w, cfg):
    r = aj.init_ranges(w, cfg)
    return r.replace(column=jnp.ones_like(r.column), input=jnp.ones_like(r.input))


@pytest.mark.parametrize(("t", "oracle"), [(1.0, 0.059), (YEAR, 0.133)])
def test_constant_weight_readout_spread_matches_aihwkit_within_3_percent(t, oracle):
    # W = c everywhere (every device targets g_max), one-hot read-out through an ideal periphery, compensated
    cfg = aj.TileConfig(**PERIPHERY_IDEAL)
    w = np.full((512, 512), 0.3, np.float32)
    ranges = aj.init_ranges(w, cfg).replace(input=jnp.ones((1, 1), jnp.float32))
    spread = {}
    for mode in ("rescaled", "devices"):
        c = cfg.replace(programmed_conductances=mode)
        _, state = _state(w, ranges, c, t, seed=3)
        y = np.asarray(aj.mvm(state, ranges, np.eye(512, dtype=np.float32), c, key=jax.random.key(1)))
        spread[mode] = y.std() / 0.3
        assert abs(y.mean() / 0.3 - 0.996) < 0.01  # aihwkit's compensated mean
    assert abs(spread["rescaled"] / oracle - 1) < 0.03, spread
    assert spread["rescaled"] > spread["devices"]  # the rescaled devices sit below g_max: larger relative read noise


def test_rescaled_conductances_round_trip_without_drift_and_read_noise():
    # programming noise only: the re-conversion to one device per pair and the rescale are exact
    cfg = aj.TileConfig(drift_scale=0.0, read_noise_scale=0.0, drift_compensation=False)
    w = np.random.default_rng(0).normal(size=(600, 300)).astype(np.float32)
    ranges = aj.init_ranges(w, cfg)
    chip, state = _state(w, ranges, cfg, DAY)
    programmed = (np.asarray(chip.g_plus) - np.asarray(chip.g_minus)) / cfg.g_max
    np.testing.assert_allclose(np.asarray(state.weights), programmed, rtol=1e-5, atol=1e-6)


def test_rescaled_read_noise_acts_on_one_device_at_the_crossbar_scale():
    # read noise only after programming: w(t) = w_p + sign(w_p) |w_p| Q(g') T n with g' = g_max |w_p| / max |w_p|
    cfg = aj.TileConfig(drift_scale=0.0, drift_compensation=False)
    w = np.random.default_rng(1).uniform(-1, 1, size=(512, 512)).astype(np.float32)
    chip, state = _state(w, _unit(w, cfg), cfg, DAY, seed=4)
    w_p = ((np.asarray(chip.g_plus) - np.asarray(chip.g_minus)) / cfg.g_max).astype(np.float64).ravel()
    w_t = np.asarray(state.weights, np.float64).ravel()
    g = cfg.g_max * np.abs(w_p) / np.abs(w_p).max()
    sigma = np.asarray(_pcm.read_noise_q(g, cfg.g_max), np.float64) * float(
        _pcm.read_noise_time_factor(DAY, cfg.t0, cfg.t_read)
    )
    keep = np.abs(w_p) > 0.05  # far from max(0, .): no clipping
    z = (w_t - w_p)[keep] / (np.abs(w_p) * sigma)[keep]
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert abs(z.std() - 1) < 0.01  # one noisy device per pair: the other one holds 0


def _folded_mean(mu, sigma):
    """E|mu + sigma N|."""
    tail = sigma * math.sqrt(2 / math.pi) * np.exp(-(mu**2) / (2 * sigma**2))
    return mu * (1 - 2 * stats.norm.cdf(-mu / sigma)) + tail


@pytest.mark.parametrize("t", [DAY, YEAR])
def test_forward_readout_compensation_equals_its_derivation(t):
    # alpha = mean|w_p + s n| / mean|w(t) + s n'| over the crossbar (output noise s; no ADC here), which for
    # a large crossbar is mean E|w_p + s N| / mean E|w(t) + s N| (a folded normal per device)
    cfg = aj.TileConfig(out_res=None, out_bound=None, out_noise=0.04)
    w = np.random.default_rng(2).normal(size=(512, 512)).astype(np.float32) * 0.05
    chip, state = _state(w, aj.init_ranges(w, cfg), cfg, t, seed=5)
    exact_cfg = cfg.replace(drift_readout="exact")
    exact_chip, exact = _state(w, aj.init_ranges(w, cfg), exact_cfg, t, seed=5)  # its reference is exact too
    np.testing.assert_array_equal(np.asarray(exact_chip.g_plus), np.asarray(chip.g_plus))  # the same devices
    np.testing.assert_array_equal(np.asarray(exact.weights), np.asarray(state.weights))  # same read-out weights
    w_p = ((np.asarray(chip.g_plus) - np.asarray(chip.g_minus)) / cfg.g_max).astype(np.float64)
    w_t = np.asarray(state.weights, np.float64)
    derived = _folded_mean(np.abs(w_p), 0.04).mean() / _folded_mean(np.abs(w_t), 0.04).mean()
    assert abs(float(state.alpha[0, 0]) / derived - 1) < 2e-3
    assert abs(float(exact.alpha[0, 0]) / (np.abs(w_p).mean() / np.abs(w_t).mean()) - 1) < 1e-5
    # the output noise adds about the same to both read-outs: alpha under-compensates the drift
    assert float(state.alpha[0, 0]) < float(exact.alpha[0, 0]) * 0.99


def test_forward_readout_depends_on_gamma_and_is_one_without_drift():
    cfg = aj.TileConfig()
    w = np.random.default_rng(3).normal(size=(256, 256)).astype(np.float32) * 0.05
    ranges = aj.init_ranges(w, cfg)

    def alpha(scale, readout):
        c = cfg.replace(drift_readout=readout)
        return float(_state(w, ranges.replace(column=ranges.column * scale), c, YEAR)[1].alpha[0, 0])

    # a wider gamma makes the weights smaller against the fixed output noise: less of the drift is seen
    under = [alpha(s, "forward") / alpha(s, "exact") for s in (1.0, 2.0)]
    assert under[1] < under[0] < 1.0, under
    still = cfg.replace(drift_scale=0.0, read_noise_scale=0.0)
    alpha = float(_state(w, ranges, still, YEAR)[1].alpha[0, 0])
    assert abs(alpha - 1) < 2e-3  # only the two output-noise draws differ


def test_fidelity_options_are_validated_and_ideal_stays_ideal():
    with pytest.raises(ValueError, match="programmed_conductances"):
        aj.TileConfig(programmed_conductances="pairs")
    with pytest.raises(ValueError, match="drift_readout"):
        aj.TileConfig(drift_readout="ideal")
    cfg = aj.TileConfig.ideal()
    assert cfg.programmed_conductances == "rescaled" and cfg.drift_readout == "forward"
    w = np.random.default_rng(4).normal(size=(700, 300)).astype(np.float32)
    x = np.random.default_rng(5).normal(size=(8, 700)).astype(np.float32)
    ranges = aj.init_ranges(w, cfg)
    _, state = _state(w, ranges, cfg, YEAR)
    y = aj.mvm(state, ranges, x, cfg, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(y), x @ w, rtol=1e-4, atol=1e-4)


def test_tile_weight_mapping_shares_one_abs_max_per_crossbar():
    cfg = aj.TileConfig()
    rng = np.random.default_rng(6)
    w = (rng.normal(size=(700, 900)) * rng.uniform(0.01, 1.0, size=900)).astype(np.float32)  # varying column scales
    column = aj.init_ranges(w, cfg)
    tile = aj.init_ranges(w, cfg, weight_mapping="tile")
    layout = aj.tile_layout(700, 900, cfg)
    rows, cols = np.cumsum((0, *layout.in_sizes)), np.cumsum((0, *layout.out_sizes))
    for a in range(layout.n_in):
        for b in range(layout.n_out):
            block = np.abs(w[rows[a] : rows[a + 1], cols[b] : cols[b + 1]])
            np.testing.assert_array_equal(np.asarray(tile.column)[a, cols[b] : cols[b + 1]], block.max())
            np.testing.assert_array_equal(np.asarray(column.column)[a, cols[b] : cols[b + 1]], block.max(axis=0))
    x = rng.normal(size=(256, 700)).astype(np.float32)
    errors = {}
    for name, r in (("column", column), ("tile", tile)):
        r = r.replace(input=jnp.full_like(r.input, 3.0))
        _, state = _state(w, r, cfg, DAY)
        y = np.asarray(aj.mvm(state, r, x, cfg, key=jax.random.key(2)))
        errors[name] = np.mean((y - x @ w) ** 2) / np.mean((x @ w) ** 2)
    assert errors["tile"] > 2 * errors["column"], errors  # small columns sit at small, noisier conductances
    with pytest.raises(ValueError, match="weight_mapping"):
        aj.init_ranges(w, cfg, weight_mapping="row")


@pytest.mark.parametrize("max_out", [None, 0])
def test_inputs_only_tiling_spans_all_outputs_and_equals_the_tiled_path_when_ideal(max_out):
    w = np.random.default_rng(7).normal(size=(1100, 1300)).astype(np.float32)
    x = np.random.default_rng(8).normal(size=(16, 1100)).astype(np.float32)
    slabs, tiled = aj.TileConfig.ideal(max_output_size=max_out), aj.TileConfig.ideal()
    layout = aj.tile_layout(1100, 1300, slabs)
    assert layout.in_sizes == (367, 367, 366) and layout.out_sizes == (1300,)
    outs = []
    for cfg in (slabs, tiled):
        r = aj.init_ranges(w, cfg, inputs=x)
        _, state = _state(w, r, cfg, DAY)
        outs.append(np.asarray(aj.mvm(state, r, x, cfg, key=jax.random.key(0))))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outs[0], x @ w, rtol=1e-4, atol=1e-3)
    cfg = aj.TileConfig(max_output_size=max_out)  # the PCM model on slabs: one beta and one alpha per slab
    r = aj.init_ranges(w, cfg)
    assert r.input.shape == (3, 1)
    _, state = _state(w, r, cfg, DAY)
    assert state.alpha.shape == (3, 1)
    assert np.isfinite(np.asarray(aj.mvm(state, r, x, cfg, key=jax.random.key(0)))).all()


def test_aihwkit_presets():
    assert aj.TileConfig.aihwkit_inference() == aj.TileConfig()
    hwa = aj.TileConfig.aihwkit_standard_hwa()
    assert hwa.max_output_size is None and hwa.max_input_size == 512 and hwa.out_noise == 0.04
    assert (hwa.inp_res, hwa.out_res, hwa.out_bound) == (254, 254, 10.0)
    assert aj.tile_layout(768, 3072, hwa).out_sizes == (3072,)
    assert aj.TileConfig.aihwkit_standard_hwa(out_noise=0.0).out_noise == 0.0


@pytest.mark.parametrize("mode", ["rescaled", "devices"])
@pytest.mark.parametrize("t", [0.0, DAY])
def test_written_slopes_equal_forward_mode_autodiff(monkeypatch, mode, t):
    from aimc_jax.tile import _program

    cfg = aj.TileConfig(programmed_conductances=mode)
    rng = np.random.default_rng(9)
    w = rng.normal(size=(300, 200)).astype(np.float32) * 0.05
    w[rng.random(w.shape) < 0.05] = 0.0  # exact zeros: both devices at target 0 (autodiff's tie rules)
    ranges = aj.init_ranges(w, cfg)
    ranges = ranges.replace(column=ranges.column * 0.6)  # some weights clip
    k1, k2 = jax.random.split(jax.random.key(3))
    cot = jnp.asarray(rng.normal(size=(1, 1, 300, 200)).astype(np.float32))

    def grads():
        def loss(col, ww):
            state = aj.fresh_state(ww, ranges.replace(column=col), t, cfg, key_program=k1, key_read=k2)
            return jnp.sum(cot * state.weights)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(ranges.column, jnp.asarray(w))

    written = grads()
    monkeypatch.setattr(_program, "_SLOPE", "jvp")
    jax.clear_caches()
    autodiff = grads()
    for a, b in zip(written, autodiff, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        off = ~np.isclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())
        assert off.sum() <= max(1, 1e-4 * b.size), (off.sum(), b.size)
