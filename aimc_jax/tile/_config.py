"""Tile configuration: one frozen, hashable dataclass for the hardware model.

`TileConfig` holds every number of the PCM inference model of REFERENCE §2. It is
validated on construction and is meant to be passed to `jax.jit` as a static
argument; vary it with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import math

from aimc_jax.tile import _device

__all__ = ["TileConfig"]

_PROGRAMMED_CONDUCTANCES = ("rescaled", "devices")
_DRIFT_READOUTS = ("forward", "exact")
_NOISE_PRNGS = ("hash", "jax", "rbg", "unsafe_rbg")
_CROSSBAR_KERNELS = ("auto", "unrolled", "batched")
_SHOWN_WHEN_SET = ("weight_noise", "device")  # added after results were cached: in repr only when not the default


def _check_resolution(name: str, value) -> None:
    if value is None or value == 0:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"TileConfig.{name} must be an int >= 2, 0 or None (no quantisation), got {value!r}")
    if value < 2:
        raise ValueError(
            f"TileConfig.{name}={value}: a resolution needs at least 2 steps over [-1, 1] "
            "(use 0 or None for no quantisation)"
        )


def _check_positive(name: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"TileConfig.{name} must be a finite number > 0, got {value!r}")


def _check_non_negative(name: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"TileConfig.{name} must be a finite number >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TileConfig:
    """Crossbar tile hardware model (REFERENCE §2); defaults are the PCM inference model.

    Attributes:
      max_input_size: rows of one crossbar (inputs); layers are split near-equally.
      max_output_size: columns of one crossbar (outputs); None (or 0): inputs-only tiling
        (aihwkit's `StandardHWATrainingPreset`, `max_output_size=0`): 512-row slabs
        across all outputs, one DAC range and one drift-compensation alpha per slab.
      inp_res: DAC steps over [-1, 1] (step 2/inp_res); 0 or None: no quantisation.
      inp_clip: the DAC clips normalised inputs x / beta to [-1, 1] (a real DAC
        does). False: an unbounded DAC (the grid, if any, extends without limit), for
        ablations; `ideal()` turns it off so that an ideal tile computes `x @ W`
        whatever its ranges.
      out_res: ADC steps over [-out_bound, out_bound]; 0 or None: no quantisation.
      out_bound: ADC clipping bound in normalised units; None: no clipping.
      out_noise: std of the additive Gaussian output noise, fresh per MVM.
      g_max: maximum conductance in micro-Siemens.
      prog_noise_scale: scale of the PCM programming noise (0 = off).
      read_noise_scale: scale of the 1/f read noise (0 = off).
      drift_scale: scale of the drift exponents nu (0 = no drift).
      t0: drift reference time in seconds.
      t_read: read duration in seconds for the 1/f noise.
      drift_compensation: global drift compensation per crossbar.
      programmed_conductances: what drift and read noise act on. "rescaled" (default,
        aihwkit's order): the programmed net weights w_p = (g+ - g-) / g_max of a
        crossbar are converted back into one device per pair and rescaled so that
        the crossbar's largest |w_p| sits at g_max (inference/noise/base.py, the
        conductance converter), then drift and 1/f read noise act on those
        conductances and the read-out is scaled back. "devices": each device keeps its
        own programmed conductance (both devices of a pair drift and read noisily).
        The rescale factor is treated as a constant by gradients.
      drift_readout: how drift compensation reads a crossbar out. "forward" (default,
        aihwkit's `GlobalDriftCompensation`): the identity through the tile's forward
        (DAC at full scale, output noise, ADC at `out_bound`/`out_res`), mean |y|,
        right after programming and again at t, so alpha under-compensates slightly
        and depends on gamma; "exact": mean |g+ - g-| / g_max of the devices.
      noise_prng: generator of every Gaussian draw (the key passed to `program`,
        `read` or `mvm` decides the stream in every case): "hash" (default) a
        counter-based hash seeded by the key, vmap-invariant, for the programming
        noise, drift exponents, read noise and output noise alike (measured 2-3x
        cheaper than threefry for program + read and ~5x for the output noise on
        CPU); "jax" `jax.random.normal` with the key's own implementation
        everywhere; "rbg" / "unsafe_rbg" XLA's RngBitGenerator for the per-MVM
        output noise (fast, but not vmap-invariant), with `jax.random.normal` of
        the key for the per-chip draws of `program` and `read` (which are vmapped
        over layers and keys).
      weight_noise: std of an additive Gaussian noise on every read-out normalised weight
        (units of gamma: w in [-1, 1]), drawn at each read-out (`read`, `fresh_state`)
        after drift and read noise; 0 (default) off. With the PCM effects off it is a
        generic device model (`gaussian_device`), for PT with less knowledge of the
        hardware than the chip it is evaluated on. Its gradient passes straight through;
        with drift compensation on, the read-out that sets alpha at t includes it.
      device: the device model of each conductance, by name in `DEVICES` (a `Device`: programming
        noise, drift exponents, drift, read noise): "pcm" (default, `PCM`: aihwkit's
        `PCMLikeNoiseModel`) is the only one so far. The `*_scale` fields above scale its
        effects, `g_max`, `t0`, `t_read` are its constants.
      crossbar_kernel: how `mvm` runs the crossbars, not what it computes (both give
        the same outputs and output noise up to float summation order): "unrolled"
        one small dot per crossbar, unrolled at trace time (fastest on XLA:CPU);
        "batched" one batched dot over all crossbars of the layer (suited to GPU/TPU);
        "auto" (default) picks "unrolled" when `jax.default_backend()` is "cpu" at
        trace time, "batched" otherwise. Left out of `repr` (which results caches
        key on), kept in `==` and `hash` (which `jit` keys on).

    References:
      Lammie et al., ISCAS 2024 (arXiv 2401.09859); aihwkit 1.2.0 `PCMLikeNoiseModel`.
    """

    max_input_size: int = 512
    max_output_size: int | None = 512
    inp_res: int | None = 254
    inp_clip: bool = True
    out_res: int | None = 254
    out_bound: float | None = 10.0
    out_noise: float = 0.04
    g_max: float = 25.0
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    drift_scale: float = 1.0
    t0: float = 20.0
    t_read: float = 250e-9
    drift_compensation: bool = True
    programmed_conductances: str = "rescaled"
    drift_readout: str = "forward"
    noise_prng: str = "hash"
    weight_noise: float = 0.0
    device: str = "pcm"
    crossbar_kernel: str = dataclasses.field(default="auto", repr=False)

    def __repr__(self) -> str:
        """The dataclass repr, without fields added since results were first cached while they keep their defaults.

        Results caches and saved ranges key on `repr(config)`: a new field left at its
        default must not change the key of every earlier result.
        """
        shown = (
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.repr and not (f.name in _SHOWN_WHEN_SET and getattr(self, f.name) == f.default)
        )
        return f"TileConfig({', '.join(shown)})"

    def __post_init__(self):
        for name in ("max_input_size", "max_output_size"):
            value = getattr(self, name)
            if name == "max_output_size" and (value is None or (value == 0 and not isinstance(value, bool))):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                extra = " (or None for inputs-only tiling)" if name == "max_output_size" else ""
                raise ValueError(f"TileConfig.{name} must be an int >= 1{extra}, got {value!r}")
        _check_resolution("inp_res", self.inp_res)
        _check_resolution("out_res", self.out_res)
        _check_positive("out_bound", self.out_bound, allow_none=True)
        for name in ("out_noise", "prog_noise_scale", "read_noise_scale", "drift_scale", "weight_noise"):
            _check_non_negative(name, getattr(self, name))
        for name in ("g_max", "t0", "t_read"):
            _check_positive(name, getattr(self, name))
        if self.t_read > self.t0:  # read noise's sqrt(ln((t + t0 + t_read) / (2 t_read))) needs t0 >= t_read
            raise ValueError(
                f"TileConfig.t_read ({self.t_read!r} s) must not exceed t0 ({self.t0!r} s): the 1/f read-noise "
                "factor sqrt(ln((t + t0 + t_read) / (2 t_read))) is undefined at t = 0 otherwise"
            )
        if not isinstance(self.inp_clip, bool):
            raise ValueError(f"TileConfig.inp_clip must be a bool, got {self.inp_clip!r}")
        if not isinstance(self.drift_compensation, bool):
            raise ValueError(f"TileConfig.drift_compensation must be a bool, got {self.drift_compensation!r}")
        if self.programmed_conductances not in _PROGRAMMED_CONDUCTANCES:
            raise ValueError(
                f"TileConfig.programmed_conductances must be one of {_PROGRAMMED_CONDUCTANCES}, "
                f"got {self.programmed_conductances!r}"
            )
        if self.drift_readout not in _DRIFT_READOUTS:
            raise ValueError(f"TileConfig.drift_readout must be one of {_DRIFT_READOUTS}, got {self.drift_readout!r}")
        if self.noise_prng not in _NOISE_PRNGS:
            raise ValueError(f"TileConfig.noise_prng must be one of {_NOISE_PRNGS}, got {self.noise_prng!r}")
        if self.device not in _device.DEVICES:
            raise ValueError(f"TileConfig.device must be one of {tuple(_device.DEVICES)}, got {self.device!r}")
        if self.crossbar_kernel not in _CROSSBAR_KERNELS:
            raise ValueError(
                f"TileConfig.crossbar_kernel must be one of {_CROSSBAR_KERNELS}, got {self.crossbar_kernel!r}"
            )

    @classmethod
    def ideal(cls, **overrides) -> TileConfig:
        """A config with every non-ideality off (no quantisation, noise, drift or clipping, DAC included).

        Tiling is kept (it is exact). Keyword arguments switch single effects back on,
        e.g. `TileConfig.ideal(inp_res=254, inp_clip=True)` for the DAC alone.
        """
        fields = dict(
            inp_res=None,
            inp_clip=False,
            out_res=None,
            out_bound=None,
            out_noise=0.0,
            prog_noise_scale=0.0,
            read_noise_scale=0.0,
            drift_scale=0.0,
            drift_compensation=False,
        )
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def aihwkit_inference(cls, **overrides) -> TileConfig:
        """aihwkit's `InferenceRPUConfig` + `PCMLikeNoiseModel` + `GlobalDriftCompensation` (the defaults).

        512 x 512 crossbars, 8-bit DAC/ADC (254 steps), ADC bound 10, output noise
        0.04, the PCM programming noise, drift and 1/f read noise acting on the
        programmed weights re-converted at each crossbar's scale, and the identity
        read-out through the forward for drift compensation. The weight mapping is
        `init_ranges`' choice: `weight_mapping="tile"` for a plain `InferenceRPUConfig`
        (one abs-max per tile), "column" (default) for `weight_scaling_columnwise=True`.
        Not modelled: noise/bound management (the paper's static DAC ranges replace
        them), short-term weight noise, IR drop.
        """
        return cls(**overrides)

    @classmethod
    def aihwkit_standard_hwa(cls, **overrides) -> TileConfig:
        """aihwkit's `StandardHWATrainingPreset` at inference, as far as the tile model goes.

        Inputs-only tiling (`max_output_size=0` there: 512-row slabs across all outputs,
        one DAC range and one alpha per slab), 254-step DAC/ADC, ADC bound 10, output
        noise 0.04, PCM noise and global drift compensation; map weights with
        `weight_mapping="column"` (its `weight_scaling_columnwise=True`). Not modelled:
        its short-term weight noise (`w_noise=0.0175`, type PCM_READ, per MVM) and IR
        drop (`ir_drop=1.0`); HWA training's own weight noise is `HWAConfig`'s.
        """
        return cls(**{"max_output_size": None, **overrides})

    @classmethod
    def gaussian_device(cls, weight_noise: float, **overrides) -> TileConfig:
        """A generic (non-PCM) device: additive Gaussian weight noise of std `weight_noise` at read-out.

        No PCM programming noise, drift, 1/f read noise or drift compensation; the
        periphery (tiling, DAC, ADC, output noise) as the defaults. The hardware-information
        ablation of PT optimises ranges on this and evaluates them on the PCM chip; match
        `weight_noise` to the PCM chip's weight error with `aimc_jax.weight_error_std`.
        """
        fields = dict(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0, drift_compensation=False)
        return cls(**{**fields, "weight_noise": weight_noise, **overrides})

    def replace(self, **changes) -> TileConfig:
        """`dataclasses.replace` as a method (re-validates)."""
        return dataclasses.replace(self, **changes)
