"""Flax NNX models on analog tiles: `AnalogLinear` and the `to_analog` graph transformation.

    model = to_analog(model, include=("blocks/*",))          # nnx.Linear -> AnalogLinear
    graphdef, params = nnx.split(model)                        # weights: frozen data
    ranges = init_model_ranges(params, config)                 # the only thing PT trains
    y = analog_forward(graphdef, params, ranges, x, config=config, t=3600.0, key=key)

The functions of `aimc_jax.models._analog` (`init_model_ranges`, `program_model`,
`fresh_chip`, `analog_apply`, `analog_forward`, `collect_layer_inputs`) take an NNX
model, its `nnx.State`, or its `(GraphDef, State)` pair wherever they take linen
variables. An analog layer is named by its path in the model ("blocks/0/mlp"); its
kernel is an `AnalogKernel` (an `nnx.Param`), so the split state says which layers
are analog and `nnx.split(model, nnx.Param)` still holds every weight.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from aimc_jax._checks import check_finite
from aimc_jax.tile import mvm

__all__ = ["AnalogKernel", "AnalogLinear", "to_analog"]


class AnalogKernel(nnx.Param):
    """The (in, out) kernel of an `AnalogLinear`: an `nnx.Param` that marks its layer as analog."""


class AnalogLinear(nnx.Module):
    """`nnx.Linear`'s computation on simulated analog crossbars (bias stays digital).

    Outside `analog_apply`/`analog_forward` it computes the float `x @ kernel + bias`.
    Inside, those functions hand each layer its ranges, read-out chip state and
    output-noise key on a throw-away copy of the model (`nnx.merge` of the split
    state), so the model itself never holds hardware state.

    Attributes:
      kernel: `AnalogKernel` (in_features, out_features).
      bias: `nnx.Param` (out_features,) or None.
    """

    def __init__(self, kernel, bias=None):
        kernel = jnp.asarray(kernel, jnp.float32)
        if kernel.ndim != 2:
            raise ValueError(f"AnalogLinear: kernel must be (in, out), got shape {kernel.shape}")
        if bias is not None and jnp.shape(bias) != (kernel.shape[1],):
            raise ValueError(f"AnalogLinear: bias must be ({kernel.shape[1]},), got shape {jnp.shape(bias)}")
        self.in_features, self.out_features = kernel.shape
        self.kernel = AnalogKernel(kernel)
        self.bias = None if bias is None else nnx.Param(jnp.asarray(bias, jnp.float32))
        self.analog = None  # (name, ranges, state, key, TileConfig) while a forward pass runs analog
        self.sink = None  # a list collecting this layer's inputs (collect_layer_inputs)

    @classmethod
    def from_linear(cls, linear: nnx.Linear) -> AnalogLinear:
        """The analog counterpart of an `nnx.Linear` (same kernel and bias values)."""
        return cls(linear.kernel[...], None if linear.bias is None else linear.bias[...])

    def __call__(self, x):
        kernel = self.kernel[...]
        if self.sink is not None:
            self.sink.append(x)
        if self.analog is None:
            y = x.astype(jnp.float32) @ kernel
        else:
            name, ranges, state, key, config = self.analog
            check_finite(x, f"layer {name!r}: input x")
            y = mvm(state, ranges, x, config, key=key)
        return y if self.bias is None else y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))


def _path_name(path: Iterable) -> str:
    return "/".join(str(p) for p in path)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _set_child(parent, key, child) -> None:
    if isinstance(key, int) or not isinstance(parent, nnx.Module):
        parent[key] = child
    else:
        setattr(parent, key, child)


def to_analog(model: nnx.Module, *, include: str | Iterable[str] = "*", exclude: str | Iterable[str] = ()):
    """A copy of an NNX model whose `nnx.Linear` layers run on analog tiles.

    Every `nnx.Linear` whose path ("encoder/blocks/0/mlp/fc1") matches a glob in
    `include` and none in `exclude` becomes an `AnalogLinear` with the same kernel
    and bias; everything else (other layers, `nnx.LinearGeneral`, convolutions) is
    kept as it is. The given model is not modified.

    Raises:
      ValueError: when no layer is selected (a pattern typo would otherwise leave
        the whole model digital).
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"to_analog takes an nnx.Module, got {type(model).__name__}")
    include = (include,) if isinstance(include, str) else tuple(include)
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    copy = nnx.clone(model)
    nodes = dict(nnx.iter_graph(copy))
    linear = [path for path, node in nodes.items() if isinstance(node, nnx.Linear)]
    chosen = [p for p in linear if _matches(_path_name(p), include) and not _matches(_path_name(p), exclude)]
    if not chosen:
        found = sorted(_path_name(p) for p in linear)
        raise ValueError(f"to_analog: no nnx.Linear matches include={include} exclude={exclude}; found {found[:8]}")
    for path in chosen:
        parent = nodes[tuple(path[:-1])]
        _set_child(parent, path[-1], AnalogLinear.from_linear(nodes[path]))
    return copy


def is_nnx(obj) -> bool:
    """True for an NNX module, state or graph definition."""
    return isinstance(obj, (nnx.Module, nnx.State, nnx.GraphDef))


def analog_kernels(variables) -> dict[str, jax.Array]:
    """{layer name: kernel (in, out)} of every `AnalogKernel` in an NNX model or state."""
    state = nnx.state(variables) if isinstance(variables, nnx.Module) else variables
    out = {}
    for path, var in nnx.to_flat_state(state):
        if isinstance(var, AnalogKernel) or getattr(var, "type", None) is AnalogKernel:
            out[_path_name(path[:-1])] = var.get_value()
    return out


def _model(module, variables) -> nnx.Module:
    """A fresh model object: `merge(graphdef, state)`, or a split-merge copy of a module."""
    if isinstance(module, nnx.GraphDef):
        if not isinstance(variables, nnx.State):
            raise TypeError(f"an nnx GraphDef goes with its nnx.State, got {type(variables).__name__}")
        return nnx.merge(module, variables)
    if isinstance(module, nnx.Module):
        if variables is not None and not isinstance(variables, (nnx.State, nnx.Module)):
            raise TypeError(f"an nnx Module goes with None or its nnx.State, got {type(variables).__name__}")
        graphdef, state = nnx.split(module)
        return nnx.merge(graphdef, state if variables is None or isinstance(variables, nnx.Module) else variables)
    raise TypeError(f"expected an nnx Module or GraphDef, got {type(module).__name__}")


def _analog_nodes(model: nnx.Module) -> dict[str, AnalogLinear]:
    return {_path_name(p): n for p, n in nnx.iter_graph(model) if isinstance(n, AnalogLinear)}


def nnx_apply(module, variables, data: Mapping[str, tuple], args, kwargs) -> Any:
    """Call the model with `data[name] = (ranges, state, key, config)` handed to each analog layer."""
    model = _model(module, variables)
    for name, node in _analog_nodes(model).items():
        node.analog = nnx.data((name, *data[name])) if name in data else None
    return model(*args, **kwargs)


def nnx_layer_inputs(module, variables, args) -> dict[str, jax.Array]:
    """{layer name: input} of every analog layer in one float forward pass (called once per layer)."""
    model = _model(module, variables)
    sinks = {}
    for name, node in _analog_nodes(model).items():
        node.sink = nnx.data(sinks.setdefault(name, []))
    model(*args)
    return {name: jnp.concatenate([x.reshape(-1, x.shape[-1]) for x in xs]) for name, xs in sinks.items() if xs}
