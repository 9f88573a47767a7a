"""Tokenising GLUE splits and batching them with length buckets.

`encode(split, tokenizer, max_length)` tokenises once (no padding);
`make_batches(encoded, batch_size)` groups examples of similar length and pads
each batch only to the smallest bucket length that holds it, so short sentences
do not pay for `max_length` tokens while the number of distinct shapes (hence of
XLA compilations) stays small. Every batch has exactly `batch_size` rows: the
last one is filled with rows of `weight` 0 and `index` -1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aimc_jax.data._glue import GlueSplit

__all__ = ["DEFAULT_BUCKETS", "Encoded", "encode", "make_batches", "unbatch"]

DEFAULT_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
"""Padded sequence lengths of `make_batches`: each batch is padded to the smallest bucket that fits it."""


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A tokenised split: ragged token ids, token types and labels."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    labels: np.ndarray
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], np.int64)


def encode(split: GlueSplit, tokenizer, max_length: int = 128) -> Encoded:
    """Tokenise a split (pairs with `truncation="longest_first"`), without padding."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    args = (split.text_a,) if split.text_b is None else (split.text_a, split.text_b)
    enc = tokenizer(*args, truncation=True, max_length=max_length, padding=False, return_token_type_ids=True)
    ids = [np.asarray(x, np.int32) for x in enc["input_ids"]]
    types = [np.asarray(x, np.int32) for x in enc["token_type_ids"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(input_ids=ids, token_type_ids=types, labels=np.asarray(split.labels), pad_token_id=int(pad))


def _bucket(length: int, buckets) -> int:
    for b in buckets:
        if length <= b:
            return b
    return int(length)


def make_batches(
    encoded: Encoded,
    batch_size: int,
    *,
    buckets=DEFAULT_BUCKETS,
    shuffle_seed: int | None = None,
    pool: int = 50,
) -> list[dict[str, np.ndarray]]:
    """Length-bucketed, padded batches.

    Args:
      encoded: from `encode`.
      batch_size: rows per batch (every batch has exactly this many).
      buckets: allowed padded lengths (ascending); a batch is padded to the smallest
        bucket >= its longest example.
      shuffle_seed: None for evaluation (examples sorted by length, deterministic);
        an int for training: shuffle, sort by length within pools of
        `pool * batch_size` examples, and shuffle the batch order.
      pool: pool size in batches when shuffling.

    Returns:
      A list of dicts with `input_ids`, `attention_mask`, `token_type_ids` (int32
      (batch, length)), `labels` ((batch,)), `weight` (float32 (batch,), 0 for
      filler rows) and `index` (int64 (batch,), the example's row, -1 for filler).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(encoded)
    if n == 0:
        return []
    lengths = encoded.lengths
    if shuffle_seed is None:
        order = np.argsort(lengths, kind="stable")
        groups = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    else:
        rng = np.random.default_rng(shuffle_seed)
        perm = rng.permutation(n)
        groups = []
        step = pool * batch_size
        for i in range(0, n, step):
            chunk = perm[i : i + step]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            groups += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
        groups = [groups[i] for i in rng.permutation(len(groups))]
    labels = encoded.labels
    out = []
    for idx in groups:
        length = _bucket(int(lengths[idx].max()), buckets)
        ids = np.full((batch_size, length), encoded.pad_token_id, np.int32)
        types = np.zeros((batch_size, length), np.int32)
        mask = np.zeros((batch_size, length), np.int32)
        for row, i in enumerate(idx):
            k = lengths[i]
            ids[row, :k], types[row, :k], mask[row, :k] = encoded.input_ids[i], encoded.token_type_ids[i], 1
        fill = batch_size - len(idx)
        # filler rows: one real-looking token so that attention has something to attend to
        mask[len(idx) :, 0] = 1
        lab = np.zeros((batch_size,), labels.dtype)
        lab[: len(idx)] = labels[idx]
        out.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": types,
                "labels": lab,
                "weight": np.r_[np.ones(len(idx)), np.zeros(fill)].astype(np.float32),
                "index": np.r_[idx, -np.ones(fill, np.int64)].astype(np.int64),
            }
        )
    return out


def unbatch(batches, outputs, n: int) -> np.ndarray:
    """Per-batch outputs (leading axis = batch rows) back in example order, filler rows dropped."""
    first = np.asarray(outputs[0])
    result = np.zeros((n, *first.shape[1:]), first.dtype)
    seen = np.zeros(n, bool)
    for b, o in zip(batches, outputs, strict=True):
        keep = b["index"] >= 0
        result[b["index"][keep]] = np.asarray(o)[keep]
        seen[b["index"][keep]] = True
    if not seen.all():
        raise ValueError(f"{int((~seen).sum())} of {n} examples have no output")
    return result
