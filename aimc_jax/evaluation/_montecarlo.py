"""Scoring a model on a task: the float model, and analog chips over seeds and drift times.

    fp = evaluate_float(module, variables, batches, split)
    mc = evaluate_analog(module, variables, ranges, batches, split, config, times=(3600.0,), seeds=10)
    mc.summary()  # {metric: {time: (mean, std)}}

Seed s is the chip drawn from `jax.random.key(s)` (split into programming, read
and MVM keys exactly as `analog_forward` does): the same seed gives the same
random draws in every condition compared, so differences between methods are
paired (common random numbers). Each chip is programmed once, read once per drift
time (the same read key at every time), then run over all batches.

References:
  Lammie, Vasilopoulos et al., ISCAS 2024 (arXiv 2401.09859): evaluation over
  drift times with repeated hardware-noise draws.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from aimc_jax._checks import check_times
from aimc_jax._checks import checked as _checked
from aimc_jax._parallel import STRATEGIES, default_strategy, stack_trees
from aimc_jax.data import GlueSplit, compute_metrics, unbatch
from aimc_jax.models._analog import ConfigLike, analog_apply, program_model, read_model
from aimc_jax.models._encoder import _check_ids

__all__ = ["MCResult", "evaluate_analog", "evaluate_float", "model_outputs", "seed_keys"]

_BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _inputs(batch):
    return {k: jnp.asarray(batch[k]) for k in _BATCH_KEYS}


@functools.cache
def _float_fn(module):
    @jax.jit
    def run(variables, b):
        return module.apply(variables, b["input_ids"], b["attention_mask"], b["token_type_ids"])

    return run


def check_token_ids(module, batches) -> None:
    """ValueError when a batch holds token ids (or token types) outside the model's tables.

    The jitted evaluators cannot check inside jit; an out-of-range id gives a NaN row.
    Modules without an `EncoderConfig` (`module.config.vocab_size`) are not checked.
    """
    cfg = getattr(module, "config", None)
    if not hasattr(cfg, "vocab_size"):
        return
    for b in batches:
        _check_ids(b["input_ids"], cfg.vocab_size, "input_ids", "vocab_size")
        if b.get("token_type_ids") is not None:
            _check_ids(b["token_type_ids"], cfg.type_vocab_size, "token_type_ids", "type_vocab_size")


def model_outputs(module, variables, batches, n: int) -> np.ndarray:
    """Float model outputs for every example, in example order (batches from `make_batches`)."""
    check_token_ids(module, batches)
    run = _float_fn(module)
    return unbatch(batches, [np.asarray(run(variables, _inputs(b))) for b in batches], n)


def evaluate_float(module, variables, batches, split: GlueSplit) -> dict[str, float]:
    """The float model's task metrics on `split` (batches made from the same split)."""
    return compute_metrics(split.task, model_outputs(module, variables, batches, len(split)), split.labels)


def seed_keys(seed: int):
    """(programming, read, MVM) keys of chip `seed`, as `analog_forward` splits them."""
    return jax.random.split(jax.random.key(seed), 3)


@dataclasses.dataclass(frozen=True)
class MCResult:
    """Monte-Carlo evaluation of one model/condition on one task.

    Attributes:
      task: task name.
      times: drift times in seconds.
      seeds: chip seeds.
      values: {metric: (n_times, n_seeds) array}.
      n_examples: examples scored.
    """

    task: str
    times: tuple[float, ...]
    seeds: tuple[int, ...]
    values: dict[str, np.ndarray]
    n_examples: int

    def summary(self) -> dict[str, dict[float, tuple[float, float]]]:
        """{metric: {time: (mean, std over seeds)}} (std with ddof=1 when there are >= 2 seeds)."""
        ddof = 1 if len(self.seeds) > 1 else 0
        return {
            m: {t: (float(v[i].mean()), float(v[i].std(ddof=ddof))) for i, t in enumerate(self.times)}
            for m, v in self.values.items()
        }

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "times": list(self.times),
            "seeds": list(self.seeds),
            "n_examples": self.n_examples,
            "values": {m: v.tolist() for m, v in self.values.items()},
        }

    @classmethod
    def concat(cls, parts: Sequence[MCResult]) -> MCResult:
        """Join results over disjoint seed sets (same task, times and examples) along the seed axis."""
        first = parts[0]
        if any((p.task, p.times, p.n_examples) != (first.task, first.times, first.n_examples) for p in parts):
            raise ValueError("MCResult.concat: parts differ in task, times or examples")
        return cls(
            task=first.task,
            times=first.times,
            seeds=tuple(s for p in parts for s in p.seeds),
            values={m: np.concatenate([p.values[m] for p in parts], axis=1) for m in first.values},
            n_examples=first.n_examples,
        )

    @classmethod
    def from_dict(cls, d: dict) -> MCResult:
        return cls(
            task=d["task"],
            times=tuple(float(t) for t in d["times"]),
            seeds=tuple(int(s) for s in d["seeds"]),
            values={m: np.asarray(v, np.float64) for m, v in d["values"].items()},
            n_examples=int(d["n_examples"]),
        )


@functools.cache
@functools.cache
def _analog_fns(module, config):
    """The jitted pieces of an evaluation, built once per (module, config): later calls reuse their compilations."""

    @jax.jit
    def program(variables, ranges, key):
        return program_model(variables, ranges, config, key=key)

    @jax.jit
    def read(chip, t, key):
        return read_model(chip, t, config, key=key)

    def apply_one(variables, ranges, state, b, key):
        return analog_apply(
            module,
            variables,
            ranges,
            state,
            b["input_ids"],
            b["attention_mask"],
            config,
            key=key,
            token_type_ids=b["token_type_ids"],
        )

    apply = jax.jit(apply_one)

    @functools.partial(jax.jit, static_argnames=("strategy", "chunk_size"))
    def apply_many(variables, ranges, states, b, keys, strategy, chunk_size):
        def one(args):
            state, key = args
            return apply_one(variables, ranges, state, b, key)

        if strategy == "vmap":
            return jax.vmap(one)((states, keys))
        return jax.lax.map(one, (states, keys), batch_size=chunk_size)

    read_many = jax.jit(jax.vmap(lambda chip, t, key: read_model(chip, t, config, key=key), in_axes=(0, None, 0)))

    def first_chip(variables, ranges, b, keys, t):
        chip = program_model(variables, ranges, config, key=keys[0])
        return apply_one(variables, ranges, read_model(chip, t, config, key=keys[1]), b, keys[2])

    return program, read, apply, apply_many, read_many, _checked(first_chip)


def evaluate_analog(
    module,
    variables,
    ranges,
    batches: Sequence[dict],
    split: GlueSplit,
    config: ConfigLike,
    *,
    times: Sequence[float],
    seeds: int | Sequence[int] = 10,
    strategy: str = "auto",
    chunk_size: int | None = None,
    progress: bool = True,
    desc: str | None = None,
    checked: bool = False,
) -> MCResult:
    """Task metrics of analog chips for every seed and drift time.

    Args:
      module: the model (an `Encoder`, or any Flax module built with `AnalogDense`).
      variables: its (fine-tuned) variables.
      ranges: {layer: `Ranges`} (e.g. `init_model_ranges`, or PT-optimised).
      batches: evaluation batches of `split` (`make_batches(encode(split, ...), n)`).
      split: the split scored (labels, task).
      config: `TileConfig` or `LayerConfigs`.
      times: drift times in seconds.
      seeds: number of chips (seeds 0..n-1) or the seed list.
      strategy: how chips are run: "loop" (one chip at a time: it is programmed, read at
        every time and run over every batch before the next, so only one chip's state is
        held), "map" (`lax.map` over the stacked chips, per batch), "vmap" (both hold
        every chip at once), or "auto" (`default_strategy()`: "loop" on CPU, "vmap" on
        accelerators). The same chips and numbers whichever is used.
      chunk_size: chips per step with "map".
      progress: progress bar over (chip,) time and batch.
      desc: progress bar label.
      checked: first run the first batch on the first chip at the first time in the
        checked mode (`aimc_jax.checked`): the guards hidden by jit (finite, positive
        ranges; finite weights, layer inputs and outputs; token ids) raise
        `checkify.JaxRuntimeError` naming the culprit. One extra compilation.

    Returns:
      `MCResult` with every per-seed value of every task metric.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        strategy = default_strategy()
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    times = tuple(float(t) for t in times)
    if not seeds or not times:
        raise ValueError("need at least one seed and one drift time")
    check_times(times, "evaluate_analog")
    check_token_ids(module, batches)
    if not batches:
        raise ValueError("no batches to evaluate")
    program, read, apply, apply_many, read_many, check_first = _analog_fns(module, config)
    keys = [seed_keys(s) for s in seeds]
    if checked:
        check_first(variables, ranges, _inputs(batches[0]), keys[0], jnp.float32(times[0]))
    n = len(split)
    values: dict[str, np.ndarray] = {}

    def score(i, s, outs):  # one chip's outputs over all batches at time index i
        scores = compute_metrics(split.task, unbatch(batches, outs, n), split.labels)
        for m, v in scores.items():
            values.setdefault(m, np.zeros((len(times), len(seeds))))[i, s] = v

    bar = tqdm(total=len(times) * len(batches), desc=desc or f"{split.task.name} analog", disable=not progress)
    if strategy == "loop":  # one chip at a time: only its programmed and read-out state is held
        bar.total = len(seeds) * len(times) * len(batches)
        for s, k in enumerate(keys):
            chip = program(variables, ranges, k[0])
            for i, t in enumerate(times):
                state = read(chip, jnp.float32(t), k[1])
                outs = []
                for j, b in enumerate(batches):
                    outs.append(np.asarray(apply(variables, ranges, state, _inputs(b), jax.random.fold_in(k[2], j))))
                    bar.update()
                score(i, s, outs)
            del chip, state
        bar.close()
        return MCResult(task=split.task.name, times=times, seeds=seeds, values=values, n_examples=n)
    # map / vmap: every chip at once (stacked), each batch run over all chips in one program
    chips = stack_trees([program(variables, ranges, k[0]) for k in keys])
    mvm_keys = jnp.stack([k[2] for k in keys])
    read_keys = jnp.stack([k[1] for k in keys])
    for i, t in enumerate(times):
        states = read_many(chips, jnp.float32(t), read_keys)
        outs = []  # per batch: (n_seeds, batch, ...)
        for j, b in enumerate(batches):
            batch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(mvm_keys, j)
            outs.append(np.asarray(apply_many(variables, ranges, states, _inputs(b), batch_keys, strategy, chunk_size)))
            bar.update()
        for s in range(len(seeds)):
            score(i, s, [o[s] for o in outs])
    bar.close()
    return MCResult(task=split.task.name, times=times, seeds=seeds, values=values, n_examples=n)
