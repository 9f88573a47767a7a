"""Saving and loading ranges together with the config and model they belong to.

    save_ranges(path, ranges, config=config, variables=variables, meta={...})
    ranges = load_ranges(path, config=config, variables=variables)  # refuses a mismatched model

The file is one `.npz`: every range array, plus a JSON header with the config (its
field values, `config_record`, and its repr for people), each analog layer's weight
shape and a SHA-256 fingerprint of its weights. A config matches when every field it
shares with the saved one has the saved value and every field the file does not know
(added to `TileConfig` later) is at its default; files of format 1 (repr only) are
matched by repr, which hides fields added later while they keep their defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from aimc_jax._cache import atomic_write
from aimc_jax.models._analog import ConfigLike, LayerConfigs, analog_layers
from aimc_jax.tile import Ranges, TileConfig, tile_layout
from aimc_jax.tile._ranges import check_ranges

__all__ = ["load_ranges", "model_fingerprint", "read_meta", "save_ranges"]

_FIELDS = ("column", "input", "output")
FORMAT = 2  # 1: config matched by repr; 2: by field values (config_record)


def config_record(config: ConfigLike | None):
    """A JSON-able record of a config's values: what changes results (fields left out of repr, such as
    `crossbar_kernel`, do not)."""
    if config is None:
        return None
    if isinstance(config, TileConfig):
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.repr}
        return {"type": "TileConfig", "fields": fields}
    if isinstance(config, LayerConfigs):
        overrides = [[pattern, config_record(c)] for pattern, c in config.overrides]
        return {"type": "LayerConfigs", "default": config_record(config.default), "overrides": overrides}
    raise TypeError(f"config must be a TileConfig or LayerConfigs, got {type(config).__name__}")


def config_differences(saved, now, where: str = "config") -> list[str]:
    """How config record `now` differs from `saved` ([] when it matches): fields with other values, and
    fields unknown to `saved` that are not at their defaults."""
    if saved is None or now is None or saved.get("type") != now.get("type"):
        same = saved is None and now is None
        return [] if same else [f"{where}: {_kind(saved)} saved, {_kind(now)} now"]
    if now["type"] == "TileConfig":
        defaults = {f.name: f.default for f in dataclasses.fields(TileConfig)}
        out = []
        for name, value in now["fields"].items():
            old = (
                saved["fields"].get(name, defaults.get(name)) if name not in saved["fields"] else saved["fields"][name]
            )
            if old != value:
                out.append(f"{where}.{name}: {old!r} saved, {value!r} now")
        out += [
            f"{where}.{n}: {saved['fields'][n]!r} saved, not a field now"
            for n in saved["fields"]
            if n not in now["fields"]
        ]
        return out
    out = config_differences(saved["default"], now["default"], f"{where}.default")
    patterns = [p for p, _ in saved["overrides"]], [p for p, _ in now["overrides"]]
    if patterns[0] != patterns[1]:
        return [*out, f"{where}.overrides: patterns {patterns[0]} saved, {patterns[1]} now"]
    for (pattern, a), (_, b) in zip(saved["overrides"], now["overrides"], strict=True):
        out += config_differences(a, b, f"{where}[{pattern!r}]")
    return out


def _kind(record) -> str:
    return "no config (digital)" if record is None else record.get("type", "?")


def model_fingerprint(variables, config: ConfigLike) -> dict:
    """{layer: {"shape": [in, out], "sha256": first 16 hex digits of the float32 weight bytes}}."""
    out = {}
    for name, (w, _) in analog_layers(variables, config).items():
        a = np.ascontiguousarray(np.asarray(w, np.float32))
        out[name] = {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()[:16]}
    return out


def _check_against_model(ranges: dict, variables, config: ConfigLike, where: str) -> None:
    """ValueError unless `ranges` has one valid `Ranges` (shapes, finite, > 0) per analog layer of the model."""
    layers = analog_layers(variables, config)
    missing, extra = sorted(set(layers) - set(ranges)), sorted(set(ranges) - set(layers))
    if missing or extra:
        raise ValueError(
            f"{where}: the ranges do not match the model's analog layers: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, (w, cfg) in layers.items():
        r = ranges[name]
        if isinstance(r, Ranges) and (r.column is None or r.input is None):
            absent = [f for f in ("column", "input") if getattr(r, f) is None]
            raise ValueError(f"{where}: layer {name!r} has no {' or '.join(absent)} ranges")
        check_ranges(r, tile_layout(*np.shape(w), cfg), f"{where}: layer {name!r}")  # shapes, finite, > 0


def save_ranges(path, ranges: dict, *, config: ConfigLike, variables, meta: dict | None = None) -> Path:
    """Write ranges + config + model fingerprint (+ free-form `meta`) to `path` (.npz).

    Raises:
      ValueError: the ranges do not cover exactly the model's analog layers, or one has
        the wrong shape, is non-finite or is not positive (nothing is written).
    """
    path = Path(path)
    _check_against_model(ranges, variables, config, f"save_ranges({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, r in ranges.items():  # checked above: Ranges, shapes, finite, > 0
        for f in _FIELDS:
            if getattr(r, f) is not None:
                arrays[f"{name}::{f}"] = np.asarray(getattr(r, f), np.float32)
    header = {
        "format": FORMAT,
        "config": repr(config),
        "config_record": config_record(config),
        "model": model_fingerprint(variables, config),
        "meta": meta or {},
    }
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    atomic_write(path, buf.getvalue())
    return path


def load_ranges(path, *, config: ConfigLike, variables) -> dict[str, Ranges]:
    """Read ranges saved by `save_ranges`, checking they belong to this config and model.

    Raises:
      ValueError: the file is not one `save_ranges` wrote (or is damaged), the config
        differs, the model's analog layers, shapes or weights differ, or a saved range
        is missing, misshapen, non-finite or not positive.
    """
    header, arrays = _read(path)
    if "config_record" in header:
        differ = config_differences(header["config_record"], config_record(config))
        if differ:
            raise ValueError(f"{path}: ranges were optimised for another config ({'; '.join(differ[:6])})")
    elif header["config"] != repr(config):  # format 1
        raise ValueError(f"{path}: ranges were optimised for config {header['config']}, not {config!r}")
    saved, now = header["model"], model_fingerprint(variables, config)
    if set(saved) != set(now):
        diff = sorted(set(saved) ^ set(now))
        raise ValueError(f"{path}: ranges belong to a model with other analog layers (differ: {diff[:5]})")
    for name in now:
        if saved[name]["shape"] != now[name]["shape"]:
            raise ValueError(
                f"{path}: layer {name} has shape {now[name]['shape']}, ranges were for {saved[name]['shape']}"
            )
        if saved[name]["sha256"] != now[name]["sha256"]:
            raise ValueError(f"{path}: layer {name} has different weights than the model the ranges were optimised for")
    out = {}
    for name in now:
        fields = {f: arrays.get(f"{name}::{f}") for f in _FIELDS}
        out[name] = Ranges(column=fields["column"], input=fields["input"], output=fields["output"])
    _check_against_model(out, variables, config, f"load_ranges({path})")
    return out


def _read(path) -> tuple[dict, dict]:
    """(header, arrays) of a ranges file; ValueError naming the file when it is not one or is damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ranges file at {path}")
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as data:  # f closes even when np.load fails
            header = json.loads(bytes(data["__header__"]).decode())
            arrays = {k: np.array(data[k]) for k in data.files if k != "__header__"}
        if not all(k in header for k in ("config", "model", "meta")):
            raise KeyError("header fields")
    except Exception as e:  # BadZipFile, EOFError, KeyError, JSON, pickle refusals: one clear message
        raise ValueError(
            f"{path} is not a ranges file written by save_ranges, or it is damaged ({type(e).__name__}: {e}); "
            "re-run the optimisation or restore the file"
        ) from e
    return header, arrays


def read_meta(path) -> dict:
    """The free-form metadata saved with the ranges."""
    return _read(path)[0]["meta"]
