"""Rotten Tomatoes sentence polarity from the PyPI sdist of vaderSentiment 3.3.2 (a fallback for SST-2).

The sdist's `additional_resources/hutto_ICWSM_2014.tar.gz` holds
`movieReviewSnippets_GroundTruth.txt`: 10,605 Rotten Tomatoes snippets (Pang & Lee)
with mean human sentiment ratings in [-4, 4] (Hutto & Gilbert, ICWSM 2014; MIT).
Label = rating > 0. Fetched once with `pip download` into the cache.

References:
  Hutto & Gilbert, VADER (ICWSM 2014); Pang & Lee, sentence polarity dataset v1.0 (2005).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from aimc_jax._cache import atomic_write, cache_dir
from aimc_jax.data._glue import GlueSplit, task_spec

__all__ = ["rotten_tomatoes_splits"]

_SDIST = "vaderSentiment==3.3.2"
_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def _fetch(directory: Path) -> Path:
    target = directory / "movieReviewSnippets_GroundTruth.txt"
    if target.is_file():
        return target
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", _SDIST, "-d"]
    subprocess.run([*cmd, str(directory)], check=True)
    (sdist,) = directory.glob("vaderSentiment-3.3.2.tar.gz")
    with tarfile.open(sdist) as outer:
        inner = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        with tarfile.open(fileobj=io.BytesIO(inner.read())) as t:
            atomic_write(target, t.extractfile(_MEMBER).read())
    return target


def rotten_tomatoes_splits(*, dev_fraction: float = 0.2, seed: int = 0, path=None) -> tuple[GlueSplit, GlueSplit]:
    """(train, dev) Rotten Tomatoes snippets as binary-sentiment splits scored like SST-2.

    Args:
      dev_fraction: fraction held out as dev (seeded permutation).
      seed: permutation seed.
      path: an existing `movieReviewSnippets_GroundTruth.txt` (default: fetched into the cache).
    """
    path = Path(path) if path is not None else _fetch(cache_dir("data", "vaderSentiment-3.3.2"))
    text, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        text.append(parts[2].strip())
        labels.append(int(float(parts[1]) > 0))
    spec = task_spec("SST-2")
    note = f"Rotten Tomatoes snippets (vaderSentiment 3.3.2 sdist), label = mean rating > 0, seeded split {seed}"
    full = GlueSplit(task=spec, split="all", text_a=text, text_b=None, labels=np.array(labels, np.int32), note=note)
    perm = np.random.default_rng(seed).permutation(len(full))
    n_dev = round(dev_fraction * len(full))
    return full.subset(np.sort(perm[n_dev:]), split="train"), full.subset(np.sort(perm[:n_dev]), split="dev")
