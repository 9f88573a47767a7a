"""A device model as data: four pure functions from a target conductance to a read-out one.

    g_p = device.programmed(g_target, n1, config)      # programming noise, once per chip
    nu  = device.drift_exponent(g_target, n2, config)  # drawn once per device, at programming
    g_d = device.drifted(g_p, nu, t, config)           # conductance at t seconds after programming
    g_r = device.read(g_d, g_p, n3, t, config)         # 1/f read noise of one read-out

A `Device` is chosen by name with `TileConfig.device` (`DEVICES`); `PCM` (`_pcm`) is the
default and the only built-in one; `register_device` adds a user's own. The tile keeps
everything else: the differential pair and the weight-to-conductance map, the draws, drift
compensation, the periphery.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable

from aimc_jax.tile import _pcm

__all__ = ["DEVICES", "PCM", "Device", "device_of", "register_device"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Device:
    """The statistics of one kind of device (cf. aihwkit's `BaseNoiseModel`), as pure elementwise functions.

    Conductances are in micro-Siemens, arrays of one shape; `n` are standard-normal
    float32 draws of that shape, which the tile draws on its own key streams with the
    generator `config.noise_prng` selects (a device never sees a key, so it cannot
    change which numbers are drawn); `t` is a scalar time in seconds since programming;
    `config` is the `TileConfig`, for g_max, t0, t_read and the scale of the effect. Each
    function runs only when its effect's scale is nonzero (`prog_noise_scale`,
    `drift_scale`, `read_noise_scale`) and applies that scale itself; with the scale 0 the
    tile leaves the effect out (g_p = g_target, nu = 0 and no drift, no read noise). Every
    function must be differentiable in its conductances: gradients of `fresh_state` for a
    device other than `PCM` come from forward-mode autodiff of these functions (PCM's
    derivative is also written out, `_slopes`).

    Attributes:
      name: the device's name in `DEVICES` and in `TileConfig.device`.
      programmed: (g_target, n, config) -> programmed conductance g_p >= 0.
      drift_exponent: (g_target, n, config) -> drift exponent nu >= 0 of each device,
        drawn at programming (the same for every later read-out).
      drifted: (g_p, nu, t, config) -> the conductance at time t without read noise.
      read: (g_d, g_p, n, t, config) -> the read-out conductance: the drifted g_d with the
        read noise of one read-out (its statistics may depend on the programmed g_p).

    References:
      aihwkit 1.2.0 `inference/noise/base.py` (`apply_programming_noise_to_conductance`,
      `generate_drift_coefficients`, `apply_drift_noise_to_conductance`).
    """

    name: str
    programmed: Callable
    drift_exponent: Callable
    drifted: Callable
    read: Callable

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Device.name must be a non-empty str, got {self.name!r}")
        for f in ("programmed", "drift_exponent", "drifted", "read"):
            if not callable(getattr(self, f)):
                raise ValueError(f"Device.{f} must be a function, got {getattr(self, f)!r}")

    def __repr__(self) -> str:
        return f"Device({self.name!r})"


PCM = Device(
    name="pcm",
    programmed=_pcm.programmed,
    drift_exponent=_pcm.drift_exponent,
    drifted=_pcm.drifted,
    read=_pcm.read,
)
"""aihwkit's `PCMLikeNoiseModel` (`_pcm`): the default device."""

_REGISTERED: dict[str, Device] = {"pcm": PCM}
DEVICES = types.MappingProxyType(_REGISTERED)
"""The devices `TileConfig.device` can name (a read-only view; `register_device` adds one)."""


def register_device(device: Device) -> Device:
    """Make `device` nameable as `TileConfig(device=device.name)`; returns it.

    Registering the same object again is a no-op; another device under a name already
    taken raises (compiled programs and saved results key on the name, so a name must
    keep meaning one device for the life of the process).

    Raises:
      TypeError: `device` is not a `Device`.
      ValueError: its name is taken by another device.
    """
    if not isinstance(device, Device):
        raise TypeError(f"register_device: expected a Device, got {type(device).__name__}")
    taken = _REGISTERED.get(device.name)
    if taken is not None and taken is not device:
        raise ValueError(f"register_device: a device named {device.name!r} is registered already ({taken!r})")
    _REGISTERED[device.name] = device
    return device


def device_of(config) -> Device:
    """The `Device` that a `TileConfig` names (`config.device`)."""
    return DEVICES[config.device]
