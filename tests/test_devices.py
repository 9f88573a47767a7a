"""Device models: the protocol (`aimc_jax.tile.Device`, PCM by default), the generic Gaussian device
(`TileConfig.weight_noise`, `gaussian_device`) and `weight_error_std`."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aimc_jax as aj
from aimc_jax.tile import DEVICES, PCM, Device, _device, register_device
from aimc_jax.tile._device import device_of

_OLD_DEFAULT_REPR = (
    "TileConfig(max_input_size=512, max_output_size=512, inp_res=254, inp_clip=True, out_res=254, "
    "out_bound=10.0, out_noise=0.04, g_max=25.0, prog_noise_scale=1.0, read_noise_scale=1.0, "
    "drift_scale=1.0, t0=20.0, t_read=2.5e-07, drift_compensation=True, programmed_conductances='rescaled', "
    "drift_readout='forward', noise_prng='hash')"
)


def _layer(n_in=96, n_out=80, seed=0):
    w = np.random.default_rng(seed).normal(0, 0.05, (n_in, n_out)).astype(np.float32)
    return jnp.asarray(w)


def test_repr_keeps_earlier_cache_keys_and_shows_a_set_weight_noise():
    assert repr(aj.TileConfig()) == _OLD_DEFAULT_REPR  # every cached result and saved ranges file keys on it
    assert "weight_noise=0.03" in repr(aj.TileConfig(weight_noise=0.03))
    assert aj.TileConfig(weight_noise=0.03) != aj.TileConfig()
    with pytest.raises(ValueError, match="weight_noise"):
        aj.TileConfig(weight_noise=-0.1)


def test_gaussian_device_reads_out_the_weights_plus_noise_of_that_std():
    sigma = 0.05
    cfg = aj.TileConfig.gaussian_device(sigma, max_input_size=32, max_output_size=48)
    assert cfg.prog_noise_scale == cfg.read_noise_scale == cfg.drift_scale == 0 and not cfg.drift_compensation
    w = _layer()
    r = aj.init_ranges(w, cfg)
    kp, kr = jax.random.key(1), jax.random.key(2)
    ideal = aj.fresh_state(w, r, 3600.0, cfg.replace(weight_noise=0.0), key_program=kp, key_read=kr)
    noisy = aj.fresh_state(w, r, 3600.0, cfg, key_program=kp, key_read=kr)
    assert aj.tile_layout(*w.shape, cfg).in_sizes == (32, 32, 32)  # 3 x 2 crossbars of 32 x 40: no padding
    err = np.asarray(noisy.weights - ideal.weights).ravel()
    assert abs(err.mean()) < 0.05 * sigma
    assert err.std() == pytest.approx(sigma, rel=0.03)
    again = aj.fresh_state(w, r, 3600.0, cfg, key_program=kp, key_read=kr)
    other = aj.fresh_state(w, r, 3600.0, cfg, key_program=kp, key_read=jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(again.weights), np.asarray(noisy.weights))
    assert not np.allclose(np.asarray(other.weights), np.asarray(noisy.weights))
    # program + read draws the same noise at read-out as the fused fresh_state
    split = aj.read(aj.program(w, r, cfg, key=kp), 3600.0, cfg, key=kr)
    np.testing.assert_allclose(np.asarray(split.weights), np.asarray(noisy.weights), atol=1e-6)


def test_weight_noise_gradient_passes_straight_through():
    cfg = aj.TileConfig.gaussian_device(0.05, max_input_size=32, max_output_size=48)
    w = _layer()
    r = aj.init_ranges(w, cfg)

    def loss(column, c):
        ranges = aj.Ranges(column=column, input=r.input)
        s = aj.fresh_state(w, ranges, 3600.0, c, key_program=jax.random.key(0), key_read=jax.random.key(1))
        return jnp.sum(s.weights * jnp.arange(s.weights.size, dtype=jnp.float32).reshape(s.weights.shape) * 1e-3)

    g_noisy = jax.grad(loss)(r.column * 0.7, cfg)
    g_clean = jax.grad(loss)(r.column * 0.7, cfg.replace(weight_noise=0.0))
    np.testing.assert_allclose(np.asarray(g_noisy), np.asarray(g_clean), rtol=1e-5, atol=1e-7)
    assert np.any(np.asarray(g_clean) != 0)


def test_weight_error_std_measures_the_device_error():
    w = _layer(200, 64)
    variables = {"params": {"dense": {"kernel": w, "bias": jnp.zeros(64, jnp.float32)}}}
    small = dict(max_input_size=64, max_output_size=64)
    ideal = aj.TileConfig.ideal(**small)
    ranges = aj.init_model_ranges(variables, ideal)
    key = jax.random.key(0)
    assert aj.weight_error_std(variables, ranges, ideal, 1.0, key=key) < 1e-6
    gauss = aj.TileConfig.gaussian_device(0.04, **small)
    assert aj.weight_error_std(variables, ranges, gauss, 1.0, key=key, chips=3) == pytest.approx(0.04, rel=0.03)
    pcm = aj.TileConfig(**small)
    early = aj.weight_error_std(variables, ranges, pcm, 1.0, key=key)
    late = aj.weight_error_std(variables, ranges, pcm, 365 * 86400.0, key=key)
    assert 0.005 < early < late < 0.5  # programming noise, then drift and read noise on top
    with pytest.raises(ValueError, match="chips"):
        aj.weight_error_std(variables, ranges, pcm, 1.0, key=key, chips=0)
    with pytest.raises(TypeError, match="key"):
        aj.weight_error_std(variables, ranges, pcm, 1.0, key=None)


def _undershooting_device():
    """A noiseless toy device: programs 0.9 of its target, drifts with nu = 0.05, reads out exactly."""
    return Device(
        name="toy",
        programmed=lambda g, n, config: 0.9 * g,
        drift_exponent=lambda g, n, config: jnp.full_like(g, 0.05 * config.drift_scale),
        drifted=lambda g, nu, t, config: g * ((t + config.t0) / config.t0) ** (-nu),
        read=lambda g, g_prog, n, t, config: g,
    )


def test_pcm_is_the_default_device_and_a_device_is_named_in_the_config():
    assert aj.TileConfig().device == "pcm" and DEVICES["pcm"] is PCM and repr(PCM) == "Device('pcm')"
    assert device_of(aj.TileConfig()) is PCM
    with pytest.raises(ValueError, match=r"TileConfig.device must be one of \('pcm',\)"):
        aj.TileConfig(device="rram")
    with pytest.raises(ValueError, match=r"Device\.read must be a function"):
        Device(name="x", programmed=abs, drift_exponent=abs, drifted=abs, read=None)


@pytest.mark.parametrize("mode", ["devices", "rescaled"])
def test_a_new_device_runs_through_program_read_and_the_fresh_state_gradient(monkeypatch, mode):
    monkeypatch.setattr(_device, "DEVICES", types.MappingProxyType({**DEVICES, "toy": _undershooting_device()}))
    cfg = aj.TileConfig.ideal(
        device="toy", prog_noise_scale=1.0, drift_scale=1.0, read_noise_scale=1.0, programmed_conductances=mode,
        max_input_size=64, max_output_size=48,
    )  # fmt: skip
    assert "device='toy'" in repr(cfg)
    w = _layer()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 96)).astype(np.float32))
    r = aj.init_ranges(w, cfg)
    r = r.replace(column=r.column * 1.5)  # no weight at the clip edge, where the slope is one-sided
    t = 3600.0
    factor = 0.9 * ((t + cfg.t0) / cfg.t0) ** -0.05
    kp, kr = jax.random.key(1), jax.random.key(2)
    state = aj.read(aj.program(w, r, cfg, key=kp), t, cfg, key=kr)
    expected = np.asarray(x @ w) * factor
    np.testing.assert_allclose(np.asarray(aj.mvm(state, r, x, cfg, key=kr)), expected, rtol=1e-5, atol=1e-5)

    def loss(ww):  # the slope of a device other than PCM comes from forward-mode autodiff of its functions
        s = aj.fresh_state(ww, r, t, cfg, key_program=kp, key_read=kr)
        return jnp.sum(aj.mvm(s, r, x, cfg, key=kr))

    np.testing.assert_allclose(np.asarray(loss(w)), expected.sum(), rtol=1e-4, atol=1e-4)
    grad = np.asarray(jax.grad(loss)(w))
    np.testing.assert_allclose(grad, np.asarray(x).sum(0)[:, None] * factor * np.ones((1, 80)), rtol=1e-5, atol=1e-6)


def test_register_device_makes_a_device_nameable_once():
    toy = _undershooting_device()
    toy = Device(name="toy-registered", programmed=toy.programmed, drift_exponent=toy.drift_exponent,
                 drifted=toy.drifted, read=toy.read)  # fmt: skip
    with pytest.raises(ValueError, match=r"TileConfig\.device must be one of"):
        aj.TileConfig(device="toy-registered")
    try:
        assert register_device(toy) is toy and register_device(toy) is toy  # the same object again: a no-op
        assert DEVICES["toy-registered"] is toy and device_of(aj.TileConfig(device="toy-registered")) is toy
        with pytest.raises(ValueError, match="registered already"):
            register_device(Device(name="toy-registered", programmed=abs, drift_exponent=abs, drifted=abs, read=abs))
    finally:
        _device._REGISTERED.pop("toy-registered", None)
    with pytest.raises(ValueError, match="registered already"):
        register_device(Device(name="pcm", programmed=abs, drift_exponent=abs, drifted=abs, read=abs))
    with pytest.raises(TypeError, match="expected a Device"):
        register_device("rram")
