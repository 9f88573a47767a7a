"""Analog execution of Flax models: their dense layers on simulated crossbars.

    ranges = init_model_ranges(variables, config)                 # naive PT start
    chip   = program_model(variables, ranges, config, key=k1)     # once per MC chip
    state  = read_model(chip, t, config, key=k2)                  # once per drift time
    logits = analog_apply(module, variables, ranges, state, *inputs, config=config, key=k3)

The model is the `aimc_jax.models.Encoder`, any linen module built from
`nn.Dense`/`nn.DenseGeneral` (2-D kernels) or `AnalogDense` layers, or an NNX model
prepared by `to_analog` (module = its `GraphDef`, variables = its `nnx.State`).
Ranges, chips and states are flat dicts keyed by layer name
("encoder/layer_0/attention/self/query"). Network weights are only ever read, so
they stay frozen; everything is pure, jit-able (module and config static),
vmap-able over keys and differentiable with respect to the ranges.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax.linen as nn
import flax.traverse_util as traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aimc_jax._checks import check_finite, require_key, scanned_layer_index
from aimc_jax._parallel import stack_trees
from aimc_jax.models._nnx import analog_kernels, is_nnx, nnx_apply, nnx_layer_inputs
from aimc_jax.tile import Ranges, TileConfig, fresh_state, init_ranges, mvm, program, read, tile_layout
from aimc_jax.tile._layout import to_blocks, valid_mask
from aimc_jax.tile._program import _check_time
from aimc_jax.tile._ranges import check_ranges
from aimc_jax.tile._state import _blocked_column

__all__ = [
    "AnalogDense",
    "LayerConfigs",
    "analog_apply",
    "analog_forward",
    "analog_layers",
    "collect_layer_inputs",
    "count_tiles",
    "fresh_chip",
    "init_model_ranges",
    "program_model",
    "read_model",
    "weight_error_std",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerConfigs:
    """Per-layer tile configs: the first matching glob pattern wins, else `default`.

    A pattern mapped to None keeps those layers digital, e.g.
    `LayerConfigs(default=TileConfig(), overrides=(("classifier/*", None),))`.
    Hashable, so it is a valid jit static argument like `TileConfig`.
    """

    default: TileConfig | None = dataclasses.field(default_factory=TileConfig)
    overrides: tuple[tuple[str, TileConfig | None], ...] = ()

    def __post_init__(self):
        for item in self.overrides:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(f"LayerConfigs.overrides must be (pattern, TileConfig | None) pairs, got {item!r}")
            if item[1] is not None and not isinstance(item[1], TileConfig):
                raise ValueError(f"LayerConfigs override for {item[0]!r} must be a TileConfig or None")

    def for_layer(self, name: str) -> TileConfig | None:
        for pattern, config in self.overrides:
            if fnmatch.fnmatchcase(name, pattern):
                return config
        return self.default


ConfigLike = TileConfig | LayerConfigs


@dataclasses.dataclass(frozen=True)
class _ScanAlias:
    """Resolves the names of scanned encoder layers ("encoder/layers/...") as those of layer 0."""

    base: ConfigLike
    scanned: str
    first: str

    def for_layer(self, name: str) -> TileConfig | None:
        if name.startswith(self.scanned):
            name = self.first + name[len(self.scanned) :]
        return _layer_config(self.base, name)


def _layer_config(config: ConfigLike, name: str) -> TileConfig | None:
    if isinstance(config, TileConfig):
        return config
    if isinstance(config, (LayerConfigs, _ScanAlias)):
        return config.for_layer(name)
    raise TypeError(f"config must be a TileConfig or LayerConfigs, got {type(config).__name__}")


class AnalogDense(nn.Module):
    """A dense layer computed on simulated analog crossbars (bias stays digital).

    Parameters are those of `flax.linen.Dense` (`kernel` (in, out), `bias`), so
    float checkpoints load unchanged. The analog data come from two variable
    collections filled by `analog_apply`: 'ranges' (this layer's `Ranges`) and
    'analog' (its read-out `TileState` as "state" and its output-noise key as
    "key", `fold_in(key, crc32(name))` of the key given to `analog_apply`).
    Layers whose config resolves to None, or called without those collections,
    compute the float `x @ kernel + bias`.

    Attributes:
      features: output size.
      tile_config: `TileConfig` or `LayerConfigs` (resolved by this layer's name).
      use_bias: add the digital bias.
    """

    features: int
    tile_config: Any = None
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32) if self.use_bias else None
        self.sow("layer_inputs", "x", x)
        name = "/".join(self.scope.path)
        config = None if self.tile_config is None else _layer_config(self.tile_config, name)
        if config is None or not self.has_variable("analog", "state"):
            if config is not None and self.has_variable("ranges", "ranges"):
                raise ValueError(f"no programmed state for analog layer {name!r}: run read_model with the same config")
            y = x.astype(jnp.float32) @ kernel
        else:
            y = _module_matmul(self, name, x, config)
        return y if bias is None else y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)


def analog_matmul(name: str, x, state, ranges, config: TileConfig, *, key):
    """`mvm(state, ranges, x, config, key=key)` after the finiteness check of the layer's input, naming the layer."""
    what, values = _input_where(name)
    check_finite(x, what, **values)
    return mvm(state, ranges, x, config, key=key)


def _module_matmul(module: nn.Module, name: str, x, config: TileConfig):
    """A bound linen layer's analog `x @ kernel` from its 'analog' and 'ranges' collections."""
    state, key = module.get_variable("analog", "state"), module.get_variable("analog", "key")
    return analog_matmul(name, x, state, module.get_variable("ranges", "ranges"), config, key=key)


def _dense_general_2d(module: nn.DenseGeneral) -> bool:
    axis, features = module.axis, module.features
    axis = axis if isinstance(axis, tuple) else (axis,)
    features = features if isinstance(features, tuple) else (features,)
    return axis == (-1,) and len(features) == 1 and not module.batch_dims


def _linen_dense(config: ConfigLike | None, sow: bool):
    """An `nn.intercept_methods` interceptor running `nn.Dense`/`nn.DenseGeneral` calls analog.

    With `config` None the layers stay float (and `sow` records their inputs in
    'layer_inputs', as `AnalogDense` does). Set up inside the traced function by
    `analog_apply`/`collect_layer_inputs`, so a jit cache never sees it change.
    """

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (nn.Dense, nn.DenseGeneral)):
            return next_fun(*args, **kwargs)
        name = "/".join(module.scope.path)
        if not module.has_variable("params", "kernel") or module.get_variable("params", "kernel").ndim != 2:
            return next_fun(*args, **kwargs)  # a multi-axis DenseGeneral: float, and not an analog layer
        cfg = None if config is None else _layer_config(config, name)
        if cfg is not None and isinstance(module, nn.DenseGeneral) and not _dense_general_2d(module):
            raise ValueError(
                f"layer {name!r}: nn.DenseGeneral with axis={module.axis}, batch_dims={module.batch_dims} cannot run "
                "analog (only axis -1 without batch dims); keep it digital: "
                f"LayerConfigs(overrides=(({name!r}, None),))"
            )
        (x,) = args
        if sow:
            module.sow("layer_inputs", "x", x)
        if cfg is None:
            return next_fun(*args, **kwargs)
        if not module.has_variable("analog", "state"):
            raise ValueError(f"no programmed state for analog layer {name!r}: run read_model with the same config")
        y = _module_matmul(module, name, x, cfg)
        if module.use_bias:
            bias = module.get_variable("params", "bias")
            y = y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)
        return y

    return interceptor


def _input_where(name: str) -> tuple:
    """(message, values) naming an analog layer's input in a check; a scanned layer by its index."""
    from aimc_jax.models._encoder import SCAN_NAME

    index = scanned_layer_index()
    parts = name.split("/")
    if index is None or SCAN_NAME not in parts:
        return f"layer {name!r}: input x", {}
    parts[parts.index(SCAN_NAME)] = "layer_{i}"
    return f"layer '{'/'.join(parts)}': input x", {"i": index}


def _params(variables) -> Mapping:
    return variables["params"] if isinstance(variables, Mapping) and "params" in variables else variables


def _kernels(variables) -> dict[str, jax.Array]:
    """{layer name: (in, out) kernel} of every dense layer that can run analog."""
    if is_nnx(variables):
        return analog_kernels(variables)
    flat = traverse_util.flatten_dict(_params(variables))
    return {"/".join(p[:-1]): v for p, v in flat.items() if p[-1] == "kernel" and len(np.shape(v)) == 2}


def analog_layers(variables, config: ConfigLike) -> dict[str, tuple[jax.Array, TileConfig]]:
    """Every dense kernel that runs on analog tiles: name -> (kernel (in, out), TileConfig).

    Linen variables: every 2-D `kernel` parameter (`AnalogDense`, `nn.Dense`, a 2-D
    `nn.DenseGeneral`: `analog_apply` runs each of them analog), named by its module
    path. NNX (a model or its `nnx.State`): the `AnalogKernel`s of the `AnalogLinear`
    layers `to_analog` made. Layers whose config resolves to None are left out.
    """
    layers = {}
    for name, value in _kernels(variables).items():
        cfg = _layer_config(config, name)
        if cfg is not None:
            layers[name] = (value, cfg)
    return layers


def _check_names(given: Mapping, expected: Iterable[str], what: str) -> None:
    given_names, expected_names = set(given), set(expected)
    if given_names != expected_names:
        missing = sorted(expected_names - given_names)
        extra = sorted(given_names - expected_names)
        raise ValueError(
            f"{what} do not match the model's analog layers: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}"
        )


def _layer_keys(key, names: Iterable[str]) -> dict:
    """{name: fold_in(key, crc32(name) & 0x7FFFFFFF)}: per-layer keys that depend only on the names.

    Computed in one vmapped fold_in: one threefry to compile instead of one per layer
    (37 for MiniLM with its head: ~1 s of compile for each set of keys a program derives).
    """
    names = list(names)
    if not names:
        return {}
    data = jnp.asarray(np.array([zlib.crc32(n.encode()) & 0x7FFFFFFF for n in names], np.uint32))
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, data)
    return {name: keys[i] for i, name in enumerate(names)}


def init_model_ranges(
    variables, config: ConfigLike, *, calibration: Mapping | None = None, weight_mapping: str = "column"
) -> dict[str, Ranges]:
    """Naive `Ranges` for every analog layer (see `aimc_jax.init_ranges` for the rules).

    Args:
      variables: the model's variables ({'params': ...}) or params.
      config: `TileConfig` or `LayerConfigs`.
      calibration: optional {layer name: inputs (..., in)}, e.g. from
        `collect_layer_inputs`; layers without an entry get beta = 3.0.
      weight_mapping: "column" (abs-max per input block and column) or "tile" (per crossbar).
    """
    calibration = calibration or {}
    layers = analog_layers(variables, config)
    unknown = sorted(set(calibration) - set(layers))
    if unknown:
        raise ValueError(f"calibration names layers the model does not run in analog: {unknown[:5]}")
    return {
        name: init_ranges(w, cfg, inputs=calibration.get(name), weight_mapping=weight_mapping)
        for name, (w, cfg) in layers.items()
    }


# Largest group of same-shape layers programmed in one vmapped call (weights): a chip's
# programming and read-out hold ~6 weight-sized intermediates, so vmapping roberta-base's
# 28 M-weight groups needed 5 GiB; bigger groups loop over their layers (`lax.map`:
# roberta-base's PT step at 32 x 128 7.1 -> 3.6 GiB of XLA temporaries, its chip
# 6.8 -> 3.4 s on 2 CPU cores). MiniLM's groups (3.7 M) stay vmapped.
GROUP_ELEMENTS = 2**23


def _grouped_map(fn, items: Mapping[str, tuple], configs: Mapping[str, TileConfig], shape_key) -> dict:
    """out[name] = fn(*items[name][:-1], configs[name], key=items[name][-1]) for every name.

    Items that share a config and `shape_key` (Q, K, V, ... of every encoder layer)
    are stacked and vmapped (looped with `lax.map` when a group exceeds
    `GROUP_ELEMENTS` weights), so a model compiles a handful of programs instead of
    one per layer; per-layer keys keep the result equal to a loop over layers.
    """
    groups: dict[Any, list[str]] = {}
    for name, args in items.items():
        groups.setdefault((configs[name], shape_key(args)), []).append(name)
    out = {}
    for (cfg, _), names in groups.items():

        def call(*args, cfg=cfg):
            *positional, key = args
            return fn(*positional, cfg, key=key)

        if len(names) == 1:
            out[names[0]] = call(*items[names[0]])
            continue
        args = tuple(stack_trees(arg) for arg in zip(*(items[n] for n in names), strict=True))
        per_layer = max(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(items[names[0]]))
        if per_layer * len(names) <= GROUP_ELEMENTS:
            stacked = jax.vmap(call)(*args)
        else:  # a loop over the layers: the chain's intermediates exist for one layer at a time
            stacked = jax.lax.map(lambda a: call(*a), args)
        for i, name in enumerate(names):
            out[name] = jax.tree.map(lambda a, i=i: a[i], stacked)
    return out


def _checked_layers(variables, ranges: Mapping[str, Ranges], config: ConfigLike, where: str) -> dict:
    """`analog_layers(variables, config)` after the eager checks of names, ranges and weights, naming the layer."""
    layers = analog_layers(variables, config)
    _check_names(ranges, layers, "ranges")
    for name, (w, cfg) in layers.items():
        check_ranges(ranges[name], tile_layout(*np.shape(w), cfg), f"{where}[{name!r}]")
        check_finite(w, f"{where}[{name!r}]: weight")
    return layers


def program_model(variables, ranges: Mapping[str, Ranges], config: ConfigLike, *, key) -> dict:
    """Program every analog layer: {name: ProgrammedTile}. Once per Monte-Carlo chip.

    Layer `name` gets the key `fold_in(key, crc32(name))`, so a layer's draw does not
    depend on which other layers are analog (common random numbers across configs).
    """
    require_key(key, "program_model()")
    layers = _checked_layers(variables, ranges, config, "program_model")
    keys = _layer_keys(key, layers)
    items = {name: (w, ranges[name], keys[name]) for name, (w, _) in layers.items()}
    configs = {name: cfg for name, (_, cfg) in layers.items()}
    return _grouped_map(program, items, configs, lambda args: (np.shape(args[0]), jax.tree.structure(args[1])))


def read_model(chip: Mapping, t, config: ConfigLike, *, key) -> dict:
    """Read every programmed layer out at time `t` seconds: {name: TileState}."""
    require_key(key, "read_model()")
    if not isinstance(chip, Mapping):
        raise TypeError(f"read_model: chip must be the dict from program_model, got {type(chip).__name__}")
    configs = {name: _layer_config(config, name) for name in chip}
    missing = sorted(name for name, cfg in configs.items() if cfg is None)
    if missing:
        raise ValueError(f"read_model: the config makes these programmed layers digital: {missing[:5]}")
    _check_time(t, "read_model")
    t = jnp.asarray(t, jnp.float32)
    keys = _layer_keys(key, chip)
    items = {name: (tile, t, keys[name]) for name, tile in chip.items()}
    return _grouped_map(read, items, configs, lambda args: args[0].layout)


def fresh_chip(variables, ranges: Mapping[str, Ranges], config: ConfigLike, t, *, key) -> dict:
    """Program a fresh chip and read it out at `t` in one step: {name: TileState}.

    Equals `read_model(program_model(variables, ranges, config, key=k1), t, config, key=k2)`
    with `k1, k2 = jax.random.split(key)` up to float32 rounding (the fused program
    contracts some multiply-adds differently), with a much cheaper gradient with respect
    to the column ranges (`aimc_jax.fresh_state`): what PT objectives draw chips with.
    """
    require_key(key, "fresh_chip()")
    k1, k2 = jax.random.split(key)
    return _fresh_chip_from(variables, ranges, config, t, k1, k2)


def weight_error_std(variables, ranges: Mapping[str, Ranges], config: ConfigLike, t, *, key, chips: int = 2) -> float:
    """The RMS weight error of fresh chips read at `t`, in units of gamma.

    The error of a device is alpha * w_read - clip(W / gamma, -1, 1) (its effective
    read-out weight, drift compensation included, against the normalised target),
    pooled over every device of every analog layer and `chips` chips drawn from `key`:
    the size of the PCM model's weight error, e.g. to match a generic device's
    `TileConfig.gaussian_device(weight_noise)` to it. Output noise and the DAC/ADC are
    not part of it.
    """
    require_key(key, "weight_error_std()")
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise ValueError(f"weight_error_std: chips must be an int >= 1, got {chips!r}")
    layers = _checked_layers(variables, ranges, config, "weight_error_std")
    total, count = 0.0, 0
    for c in range(chips):
        state = fresh_chip(variables, ranges, config, t, key=jax.random.fold_in(key, c))
        for name, (w, _) in layers.items():
            s = state[name]
            target = jnp.clip(
                to_blocks(jnp.asarray(w, jnp.float32), s.layout) / _blocked_column(s.column, s.layout)[:, :, None, :],
                -1.0,
                1.0,
            )
            err = s.alpha[:, :, None, None] * s.weights - target
            mask = valid_mask(s.layout)
            total += float(jnp.sum(jnp.where(mask, err * err, 0.0)))
            count += int(np.broadcast_to(mask, err.shape).sum())
    return math.sqrt(total / count)


def _fresh_chip_from(variables, ranges, config, t, k1, k2) -> dict:
    """`fresh_chip` with its two keys given: programming from k1, read-out from k2."""
    layers = _checked_layers(variables, ranges, config, "fresh_chip")
    _check_time(t, "fresh_chip")
    t = jnp.asarray(t, jnp.float32)
    keys_program, keys_read = _layer_keys(k1, layers), _layer_keys(k2, layers)
    items = {name: (w, ranges[name], t, keys_read[name], keys_program[name]) for name, (w, _) in layers.items()}
    configs = {name: cfg for name, (_, cfg) in layers.items()}

    def fresh(w, r, tt, key_read, cfg, *, key):
        return fresh_state(w, r, tt, cfg, key_program=key, key_read=key_read)

    return _grouped_map(fresh, items, configs, lambda args: (np.shape(args[0]), jax.tree.structure(args[1])))


def _nest(flat: Mapping, leaf: str) -> dict:
    return traverse_util.unflatten_dict({(*name.split("/"), leaf): value for name, value in flat.items()})


_LAYER_NAME = re.compile(r"^encoder/layer_(\d+)/(.+)$")


def _scan_plan(module, layers: Mapping, ranges: Mapping, state: Mapping) -> str | None:
    """Why the encoder layers cannot run as one scan (None: they can).

    Scanning needs every encoder layer to run the same sublayers with the same
    configs and the same range/state structure (shapes included).
    """
    from aimc_jax.models._encoder import Encoder

    if not isinstance(module, Encoder):
        return "the module is not an aimc_jax Encoder"
    n = module.config.num_hidden_layers
    if n < 2:
        return "the encoder has fewer than 2 layers"
    per_layer: dict[int, dict[str, Any]] = {i: {} for i in range(n)}
    for name, (_, cfg) in layers.items():
        m = _LAYER_NAME.match(name)
        if m:
            signature = jax.tree.map(np.shape, (ranges[name], state[name]))
            per_layer[int(m.group(1))][m.group(2)] = (cfg, jax.tree.structure(signature), jax.tree.leaves(signature))
    if any(per_layer[i] != per_layer[0] for i in range(1, n)):
        return "the encoder layers differ in which sublayers are analog, their configs or their range/state shapes"
    return None


def _split_config(args: tuple, config, where: str) -> tuple[tuple, ConfigLike]:
    """(model inputs, config): `config=` given, or the last positional argument (the encoder's order)."""
    if config is None and args and isinstance(args[-1], (TileConfig, LayerConfigs)):
        return args[:-1], args[-1]
    if config is None:
        raise TypeError(f"{where}: give the tile config, e.g. {where[:-2]}(..., config=TileConfig(), key=key)")
    return args, config


def analog_apply(
    module,
    variables,
    ranges: Mapping[str, Ranges],
    state: Mapping,
    *inputs,
    config: ConfigLike | None = None,
    key,
    token_type_ids=None,
    scan: bool | None = None,
    remat: bool = False,
    **kwargs,
):
    """Run a batch through a read-out chip (the key feeds the output noise).

    `module` is an `aimc_jax.models.Encoder` (its dense layers are switched to
    `AnalogDense` here), any linen module (its `nn.Dense`/2-D `nn.DenseGeneral`
    calls are intercepted and run analog; `AnalogDense` layers run analog
    themselves), or an NNX `GraphDef` with its `nnx.State` as `variables` (the
    `AnalogLinear` layers of `to_analog`). `inputs` and `kwargs` go to the model's
    call: `(input_ids, attention_mask)` for the encoder. The config comes as
    `config=`, or, for the encoder, as the last positional argument
    (`analog_apply(module, variables, ranges, state, ids, mask, config, key=key)`).
    Give each batch its own key, e.g. `jax.random.fold_in(key, batch_index)`.
    Layer `name` draws its output noise from `fold_in(key, crc32(name))`.

    Args:
      scan: run the encoder layers as one `nn.scan` (compiled once instead of
        unrolled; the same numbers up to XLA's float summation order). None: scan
        whenever every encoder layer has the same analog sublayers, configs and
        range shapes; True: require it (ValueError otherwise); False: unroll.
      remat: with scan, recompute each layer's activations in the backward pass
        (less memory for gradients w.r.t. the ranges, about one more forward).
    """
    require_key(key, "analog_apply()")
    inputs, config = _split_config(inputs, config, "analog_apply()")
    layers = analog_layers(module if variables is None else variables, config)
    _check_names(ranges, layers, "ranges")
    _check_names(state, layers, "analog states")
    keys = _layer_keys(key, layers)
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    if is_nnx(module):
        data = {name: (ranges[name], state[name], keys[name], cfg) for name, (_, cfg) in layers.items()}
        return nnx_apply(module, variables, data, inputs, kwargs)
    collections = {
        "params": _params(variables),
        "ranges": _nest(ranges, "ranges"),
        "analog": _merge(_nest(state, "state"), _nest(keys, "key")),
    }
    reason = _scan_plan(module, layers, ranges, state) if scan is not False else "scan=False"
    if scan and reason:
        raise ValueError(f"analog_apply(scan=True): cannot scan the encoder layers: {reason}")
    dense_config = config
    if reason is None:
        from aimc_jax.models._encoder import SCAN_NAME, scan_variables

        n = module.config.num_hidden_layers
        collections = {c: scan_variables(v, n) if "encoder" in v else v for c, v in collections.items()}
        dense_config = _ScanAlias(config, f"encoder/{SCAN_NAME}/", "encoder/layer_0/")
        module = module.clone(scan_layers=True, remat_layers=remat)
    if hasattr(module, "dense"):
        module = module.clone(dense=functools.partial(AnalogDense, tile_config=dense_config))
    with nn.intercept_methods(_linen_dense(config, sow=False)):
        return module.apply(collections, *inputs, **kwargs)


def _merge(a: Mapping, b: Mapping) -> dict:
    """Deep merge of two nested dicts with disjoint leaves."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if k in out and isinstance(v, Mapping) else v
    return out


def analog_forward(module, variables, ranges, *inputs, config: ConfigLike | None = None, t, key, **kwargs):
    """Program a fresh chip from `key`, read it at `t`, run one batch (arguments as `analog_apply`).

    Equals `program_model(key=k1)`, `read_model(key=k2)`, `analog_apply(key=k3)`
    with `k1, k2, k3 = jax.random.split(key, 3)` up to float32 rounding: the chip comes
    from `fresh_chip` (same draws, a cheaper gradient).
    """
    require_key(key, "analog_forward()")
    inputs, config = _split_config(inputs, config, "analog_forward()")
    k1, k2, k3 = jax.random.split(key, 3)
    state = _fresh_chip_from(module if variables is None else variables, ranges, config, t, k1, k2)
    return analog_apply(module, variables, ranges, state, *inputs, config=config, key=k3, **kwargs)


def count_tiles(variables, config: ConfigLike) -> int:
    """Number of crossbars the model's analog layers need."""
    return sum(tile_layout(*w.shape, cfg).n_tiles for w, cfg in analog_layers(variables, config).values())


_FLOAT_DENSE = functools.partial(AnalogDense, tile_config=None)


def _model_inputs(batch) -> tuple[tuple, dict, Any]:
    """(positional inputs, keyword inputs, token mask or None) of one calibration batch.

    A mapping with `input_ids` is an encoder batch (its padding mask selects the
    rows); a tuple is the model's positional inputs; anything else is its one input.
    """
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise ValueError(f"a mapping batch needs 'input_ids' (an encoder batch), got keys {sorted(batch)}")
        mask = batch.get("attention_mask")
        if mask is None:
            mask = np.ones(np.shape(batch["input_ids"]), np.int32)
        return (batch["input_ids"], mask), {"token_type_ids": batch.get("token_type_ids")}, np.asarray(mask)
    return (batch if isinstance(batch, tuple) else (batch,)), {}, None


@functools.partial(jax.jit, static_argnames="module")
def _float_layer_inputs(module, params, inputs, kwargs):
    """The float model's sown dense-layer inputs of one batch (compiled once per module and batch shape)."""
    with nn.intercept_methods(_linen_dense(None, sow=True)):
        _, sown = module.apply({"params": params}, *inputs, **kwargs, mutable=["layer_inputs"])
    return {"/".join(p[:-1]): x for p, (x,) in traverse_util.flatten_dict(sown["layer_inputs"]).items()}


@functools.partial(jax.jit, static_argnames="graphdef")
def _nnx_float_layer_inputs(graphdef, state, inputs):
    return nnx_layer_inputs(graphdef, state, inputs)


def collect_layer_inputs(
    module, variables, batches: Iterable, *, max_tokens: int = 8192, seed: int = 0
) -> dict[str, np.ndarray]:
    """Float-model inputs of every dense layer over calibration batches.

    Args:
      module: the model: an `Encoder`, any linen module (`nn.Dense`,
        `nn.DenseGeneral`, `AnalogDense` layers), or an NNX model / `GraphDef`
        (the `AnalogLinear` layers of `to_analog`).
      variables: its variables (NNX: its `nnx.State`, or None with a model).
      batches: encoder batches (dicts with `input_ids`, `attention_mask`, optional
        `token_type_ids`; padding rows are dropped), or the model's inputs: a tuple
        of positional arguments or a single array per batch.
      max_tokens: keep at most this many rows per layer (seeded subsample).
      seed: the subsample's seed.

    Returns:
      {layer name: (rows, in_features) float32 array}, ready for `init_model_ranges`.
    """
    if hasattr(module, "dense"):
        module = module.clone(dense=_FLOAT_DENSE)  # one shared factory: equal clones hit jit's cache
    if isinstance(module, nnx.Module):
        module, state = nnx.split(module)
        variables = state if variables is None or isinstance(variables, nnx.Module) else variables
    rows: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        inputs, kwargs, mask = _model_inputs(batch)
        if is_nnx(module):
            if kwargs:
                raise ValueError("an NNX model takes its inputs as a tuple or an array per batch, not a mapping")
            sown = _nnx_float_layer_inputs(module, variables, inputs)
        else:
            sown = _float_layer_inputs(module, _params(variables), inputs, kwargs)
        for name, x in sown.items():
            x = np.asarray(x)
            x = x[mask > 0] if mask is not None and x.shape[:2] == mask.shape else x.reshape(-1, x.shape[-1])
            rows.setdefault(name, []).append(x)
    rng = np.random.default_rng(seed)
    out = {}
    for name, parts in rows.items():
        x = np.concatenate(parts)
        if len(x) > max_tokens:
            x = x[np.sort(rng.choice(len(x), max_tokens, replace=False))]
        out[name] = x.astype(np.float32)
    return out
