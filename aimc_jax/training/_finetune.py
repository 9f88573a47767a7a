"""Floating-point fine-tuning of an encoder on a GLUE task, resumable from checkpoints.

    variables, info = finetune(module, variables, train, task, FinetuneConfig(), checkpoint_dir=d)

AdamW (no decay on biases and LayerNorm), linear warm-up then linear decay to 0,
dropout on, cross-entropy (classification) or mean squared error (STS-B). With a
`checkpoint_dir`, the parameters, optimiser state and step are saved every
`checkpoint_every` steps and at the end; a rerun resumes from the last save and a
finished run is loaded instead of retrained. The data order is a function of
(seed, epoch) only, so a resumed run sees the same batches as an uninterrupted one.

References:
  Devlin et al., BERT (2019), Sec. 4 (GLUE fine-tuning recipe); Loshchilov &
  Hutter, Decoupled Weight Decay Regularization (ICLR 2019).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from tqdm.auto import tqdm

from aimc_jax._cache import atomic_write
from aimc_jax.data import Encoded, TaskSpec, make_batches, task_loss, task_spec
from aimc_jax.training._hwa import INIT_COLLECTION, RANGE_PARAM

__all__ = [
    "DamagedCheckpoint",
    "FinetuneConfig",
    "check_checkpoint",
    "finetune",
    "load_finetuned",
    "make_train_step",
    "task_loss",
]

log = logging.getLogger("aimc_jax")

_FILES = ("info.json", "params.msgpack", "state.msgpack")


class DamagedCheckpoint(ValueError):
    """A fine-tuning checkpoint file that cannot be read (truncated, overwritten, or another model's)."""


def _damaged(path: Path, err: Exception) -> DamagedCheckpoint:
    return DamagedCheckpoint(
        f"{path} is damaged or not this model's ({type(err).__name__}: {err}); delete {path.parent} to fine-tune "
        "again, or pass discard_damaged=True to discard its checkpoint files and retrain"
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(path, err) from err
    if not isinstance(data, dict):
        raise _damaged(path, TypeError(f"expected a JSON object, got {type(data).__name__}"))
    return data


def _read_msgpack(path: Path, target):
    """`flax.serialization.from_bytes(target, ...)` of `path`, with a damaged file named."""
    try:
        return flax.serialization.from_bytes(target, path.read_bytes())
    except Exception as err:  # msgpack's own errors, truncation, structure or shape mismatch
        raise _damaged(path, err) from err


def check_checkpoint(checkpoint_dir, *, discard: bool = False) -> bool:
    """Whether the checkpoint files in `checkpoint_dir` all parse; `DamagedCheckpoint` when one does not.

    With `discard=True` a damaged checkpoint's files (info.json, params.msgpack,
    state.msgpack) are deleted instead, with a warning, and False is returned: the
    next `finetune` starts from scratch. Other files (identity.json) are kept.
    """
    d = Path(checkpoint_dir)
    try:
        for name in _FILES:
            path = d / name
            if not path.is_file():
                continue
            if name.endswith(".json"):
                _read_json(path)
            else:
                try:
                    flax.serialization.msgpack_restore(path.read_bytes())
                except Exception as err:
                    raise _damaged(path, err) from err
    except DamagedCheckpoint as err:
        if not discard:
            raise
        _discard(d, err)
        return False
    return True


def _discard(d: Path, err: DamagedCheckpoint) -> None:
    log.warning("aimc_jax: discarding the damaged checkpoint in %s (%s); training again", d, err.args[0])
    for name in _FILES:
        (d / name).unlink(missing_ok=True)


TRAIN_BUCKETS = (16, 32, 64, 128, 256, 512)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters.

    Attributes:
      learning_rate: peak AdamW learning rate.
      epochs: passes over the training data (fractions allowed).
      batch_size: examples per step.
      warmup: fraction of the steps spent warming up linearly from 0.
      weight_decay: AdamW decoupled weight decay (not applied to biases and LayerNorm).
      max_train: use a seeded random subset of at most this many training examples.
      seed: data order, dropout and subset seed.
      checkpoint_every: steps between checkpoints.
    """

    learning_rate: float = 5e-5
    epochs: float = 3.0
    batch_size: int = 32
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_train: int | None = None
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self):
        for name in ("learning_rate", "epochs", "batch_size", "checkpoint_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FinetuneConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"FinetuneConfig.warmup must be in [0, 1), got {self.warmup}")
        if self.weight_decay < 0:
            raise ValueError(f"FinetuneConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_train is not None and self.max_train < 1:
            raise ValueError(f"FinetuneConfig.max_train must be >= 1 or None, got {self.max_train}")


def _decay_mask(params):
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {k: not (k[-1] == "bias" or any("LayerNorm" in p or "layer_norm" in p for p in k)) for k in flat}
    )


def _optimizer(config: FinetuneConfig, total_steps: int):
    warm = max(1, round(config.warmup * total_steps))
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, config.learning_rate, warm),
            optax.linear_schedule(config.learning_rate, 0.0, max(1, total_steps - warm)),
        ],
        [warm],
    )
    return optax.adamw(schedule, weight_decay=config.weight_decay, mask=_decay_mask)


def _subset(encoded: Encoded, config: FinetuneConfig) -> Encoded:
    if config.max_train is None or config.max_train >= len(encoded):
        return encoded
    idx = np.sort(np.random.default_rng(config.seed).choice(len(encoded), config.max_train, replace=False))
    return Encoded(
        input_ids=[encoded.input_ids[i] for i in idx],
        token_type_ids=[encoded.token_type_ids[i] for i in idx],
        labels=encoded.labels[idx],
        pad_token_id=encoded.pad_token_id,
    )


def load_finetuned(checkpoint_dir, variables):
    """(variables, info) of a finished fine-tuning run in `checkpoint_dir`, or None if not finished.

    `variables` gives the structure (e.g. from `from_pretrained(..., num_labels=...)`).
    """
    d = Path(checkpoint_dir)
    if not finished(d):
        return None
    params = _read_msgpack(d / "params.msgpack", variables["params"])
    return {**variables, "params": params}, _read_json(d / "info.json")


def finished(checkpoint_dir) -> bool:
    """Whether the fine-tuning run checkpointed in `checkpoint_dir` has finished (its info says done)."""
    d = Path(checkpoint_dir)
    if not ((d / "info.json").is_file() and (d / "params.msgpack").is_file()):
        return False
    return _read_json(d / "info.json").get("status") == "done"


def _range_init_tree(params, index) -> dict:
    """{INIT_COLLECTION: {layer...: {"step": index}}} for every layer with a DAC-range param; {} without `index`."""
    if index is None:
        return {}
    flat = traverse_util.flatten_dict(params)
    index = jnp.asarray(index, jnp.int32)
    tree = {(*k[:-1], "step"): index for k in flat if k[-1] == RANGE_PARAM}
    return {INIT_COLLECTION: traverse_util.unflatten_dict(tree)} if tree else {}


def _write_back_ranges(params, initialised) -> dict:
    """params with each `RANGE_PARAM` replaced by the layer's `beta` in the range_init output (where there is one)."""
    flat = traverse_util.flatten_dict(params)
    for k, v in traverse_util.flatten_dict(initialised).items():
        if k[-1] == "beta":
            flat[(*k[:-1], RANGE_PARAM)] = v
    return traverse_util.unflatten_dict(flat)


def make_train_step(
    module,
    variables,
    spec: TaskSpec,
    tx: optax.GradientTransformation,
    project=None,
    *,
    scan_layers: bool = False,
    remat_layers: bool = False,
):
    """`step(params, opt_state, batch, key, index=None) -> (params, opt_state, loss)`: `finetune`'s step.

    `index` is the step's number (finetune passes it): HWA layers with IBM's range rule
    initialise their DAC ranges from the data in the first `HWAConfig.init_from_data`
    steps, and the step writes the initialised ranges into `params` before the update.

    Forward with dropout (and an 'hwa' rng for HWA layers, `fold_in(key, 1)`), the
    task loss plus every sown loss (HWA's range decay), backward, the optax
    update, then `project(params)` if given (HWA's weight clipping). Not jitted:
    wrap it in `jax.jit`.

    `scan_layers=True` runs the encoder layers of an `Encoder` as one `nn.scan`
    inside the step (the layer is compiled once, not unrolled: roberta-base HWA
    compiles in seconds instead of minutes); params, optimiser state and
    checkpoints keep the `layer_<i>` layout (stacked in the step, gradients flow
    back). Dropout masks and HWA noise are then drawn per scanned layer (different
    draws from the unrolled step, same distribution). `remat_layers` recomputes
    each scanned layer in the backward pass.
    """
    run = module
    if scan_layers:
        from aimc_jax.models._encoder import scan_variables, unscan_variables

        run = module.clone(scan_layers=True, remat_layers=remat_layers)
        n = module.config.num_hidden_layers

    def layout(v):
        if not scan_layers:
            return v
        return {c: scan_variables(t, n) if isinstance(t, dict) and "encoder" in t else t for c, t in v.items()}

    def unlayout(t):
        return unscan_variables(t, n) if scan_layers and "encoder" in t else t

    def step(params, opt_state, batch, key, index=None):
        init = _range_init_tree(params, index)

        def loss_fn(p):
            out, sown = run.apply(
                layout({**variables, "params": p, **init}),
                batch["input_ids"],
                batch["attention_mask"],
                batch["token_type_ids"],
                deterministic=False,
                rngs={"dropout": key, "hwa": jax.random.fold_in(key, 1)},
                mutable=["losses", *init],
            )
            aux = sum((jnp.sum(x) for x in jax.tree.leaves(sown.get("losses", {}))), jnp.float32(0.0))
            return task_loss(spec, out, batch["labels"], batch["weight"]) + aux, sown.get(INIT_COLLECTION)

        (loss, initialised), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        if initialised is not None:  # IBM's data-initialised DAC ranges replace the params before the update
            params = _write_back_ranges(params, unlayout(initialised))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params if project is None else project(params)), opt_state, loss

    return step


def finetune(
    module,
    variables,
    train: Encoded,
    task: str | TaskSpec,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    checkpoint_dir=None,
    max_steps: int | None = None,
    progress: bool = True,
    optimizer: Callable[[FinetuneConfig, int], optax.GradientTransformation] | None = None,
    project: Callable | None = None,
    discard_damaged: bool = False,
    scan_layers: bool = False,
):
    """Fine-tune all parameters on `train`; returns (variables, info).

    Args:
      module: an `Encoder` with a head of `task_spec(task).num_labels` outputs.
      variables: its initial variables (pretrained encoder + head).
      train: the encoded training split (`aimc_jax.data.encode`).
      task: task name or `TaskSpec` (selects the loss).
      config: `FinetuneConfig`.
      checkpoint_dir: save/resume here (None: no checkpoints).
      max_steps: stop after this many steps in this call, saving a resumable
        checkpoint (for time-limited jobs); None runs to the end.
      progress: show a progress bar.
      optimizer: `optimizer(config, total_steps) -> GradientTransformation` replacing
        the default AdamW schedule (HWA training gives the DAC ranges their own rate).
      project: `project(params) -> params` applied after every step (e.g. weight clipping).
      scan_layers: run the encoder layers as one scan in the step (`make_train_step`):
        compiles once per layer instead of unrolled; other random draws than the unrolled step.
      discard_damaged: a checkpoint file in `checkpoint_dir` that cannot be read raises
        `DamagedCheckpoint` naming it (default); True deletes the checkpoint and retrains.

    Losses sown by the model into the "losses" collection (e.g. HWA's DAC-range
    decay) are added to the task loss. An `hwa` rng stream is passed besides `dropout`.

    Returns:
      (fine-tuned variables, info dict with the config, steps, final loss, losses every 10 steps, seconds).
    """
    spec = task_spec(task)
    num_labels = getattr(getattr(module, "config", None), "num_labels", None)
    if num_labels is not None and num_labels != spec.num_labels:
        raise ValueError(f"{spec.name} needs a head with {spec.num_labels} outputs, the model has {num_labels}")
    d = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if d is not None:
        check_checkpoint(d, discard=discard_damaged)
        try:
            done = load_finetuned(d, variables)
        except DamagedCheckpoint as err:  # parses, but does not fit this model
            if not discard_damaged:
                raise
            _discard(d, err)
            done = None
        if done is not None:
            log.info("loaded finished fine-tuning run from %s", d)
            return done
        d.mkdir(parents=True, exist_ok=True)
    train = _subset(train, config)
    if len(train) == 0:
        raise ValueError("no training examples")
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = max(1, round(config.epochs * per_epoch))
    tx = (optimizer or _optimizer)(config, total)
    params = variables["params"]
    opt_state = tx.init(params)
    step, losses = 0, []
    state_path = d / "state.msgpack" if d is not None else None
    if state_path is not None and state_path.is_file():
        target = {"params": params, "opt_state": opt_state, "step": 0, "losses": np.zeros(0, np.float32)}
        try:
            saved = _read_msgpack(state_path, target)
        except DamagedCheckpoint as err:
            if not discard_damaged:
                raise
            _discard(d, err)
            saved = None
        if saved is not None:
            params, opt_state, step = saved["params"], saved["opt_state"], int(saved["step"])
            losses = [float(x) for x in np.asarray(saved["losses"]).ravel()]
            log.info("resuming fine-tuning at step %d/%d from %s", step, total, d)
    dropout_key = jax.random.key(config.seed)

    train_step = jax.jit(make_train_step(module, variables, spec, tx, project, scan_layers=scan_layers))

    def save(status: str):
        if d is None:
            return
        state = {"params": params, "opt_state": opt_state, "step": step, "losses": np.asarray(losses, np.float32)}
        atomic_write(state_path, flax.serialization.to_bytes(state))
        if status == "done":
            atomic_write(d / "params.msgpack", flax.serialization.to_bytes(params))
        atomic_write(d / "info.json", info(status))

    start = time.time()

    def info(status: str) -> dict:
        return {
            "status": status,
            "task": spec.name,
            "config": dataclasses.asdict(config),
            "train_examples": len(train),
            "steps": step,
            "total_steps": total,
            "final_loss": float(np.mean(losses[-10:])) if losses else None,
            "losses": losses[::10],
            "seconds": time.time() - start,
        }

    epoch_batches, epoch = None, -1
    bar = tqdm(total=total, initial=step, desc=f"fine-tune {spec.name}", disable=not progress, unit="step")
    last_loss = None
    stop = total if max_steps is None else min(total, step + max_steps)
    while step < stop:
        e, pos = divmod(step, per_epoch)
        if e != epoch:
            epoch = e
            epoch_batches = make_batches(
                train, config.batch_size, buckets=TRAIN_BUCKETS, shuffle_seed=config.seed * 100003 + e
            )
        batch = {k: jnp.asarray(v) for k, v in epoch_batches[pos].items() if k != "index"}
        params, opt_state, loss = train_step(
            params, opt_state, batch, jax.random.fold_in(dropout_key, step), jnp.int32(step)
        )
        step += 1
        last_loss = float(loss)
        if not np.isfinite(last_loss):
            bar.close()
            raise FloatingPointError(f"fine-tuning {spec.name}: loss became {last_loss} at step {step}")
        losses.append(last_loss)
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if step % config.checkpoint_every == 0 and step < total:
            save("partial")
    bar.close()
    status = "done" if step >= total else "partial"
    save(status)
    return {**variables, "params": params}, info(status)
