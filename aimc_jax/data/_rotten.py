"""Rotten Tomatoes sentence polarity from the PyPI sdist of vaderSentiment 3.3.2 (a fallback for SST-2).

The sdist's `additional_resources/hutto_ICWSM_2014.tar.gz` holds
`movieReviewSnippets_GroundTruth.txt`: 10,605 Rotten Tomatoes snippets (Pang & Lee)
with mean human sentiment ratings in [-4, 4] (Hutto & Gilbert, ICWSM 2014; MIT).
Label = rating > 0. The library never downloads: fetch the sdist yourself
(`pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d DIR`, what the main
job does when GLUE SST-2 is absent) and pass it to `extract_rotten_tomatoes`, which puts
the snippets where `rotten_tomatoes_splits` looks for them.

References:
  Hutto & Gilbert, VADER (ICWSM 2014); Pang & Lee, sentence polarity dataset v1.0 (2005).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from aimc_jax._cache import atomic_write, cache_dir
from aimc_jax.data._glue import GlueSplit, task_spec

__all__ = ["SDIST", "extract_rotten_tomatoes", "rotten_tomatoes_splits"]

SDIST = "vaderSentiment==3.3.2"  # the pip requirement of the sdist that holds the snippets
_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
_FILE = "movieReviewSnippets_GroundTruth.txt"


def _default_path() -> Path:
    return cache_dir("data", "vaderSentiment-3.3.2") / _FILE


def extract_rotten_tomatoes(sdist, path=None) -> Path:
    """Extract the snippets file from a downloaded vaderSentiment 3.3.2 sdist (.tar.gz) to `path`
    (default: where `rotten_tomatoes_splits` looks); returns the path. ValueError naming the file
    when it is not that sdist."""
    target = Path(path) if path is not None else _default_path()
    try:
        with tarfile.open(sdist) as outer:
            inner = outer.extractfile(_INNER)
            with tarfile.open(fileobj=io.BytesIO(inner.read())) as t:
                data = t.extractfile(_MEMBER).read()
    except (tarfile.TarError, KeyError, AttributeError, OSError) as e:
        raise ValueError(f"{sdist} is not the vaderSentiment 3.3.2 sdist ({type(e).__name__}: {e})") from e
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)
    return target


def rotten_tomatoes_splits(*, dev_fraction: float = 0.2, seed: int = 0, path=None) -> tuple[GlueSplit, GlueSplit]:
    """(train, dev) Rotten Tomatoes snippets as binary-sentiment splits scored like SST-2.

    Args:
      dev_fraction: fraction held out as dev (seeded permutation).
      seed: permutation seed.
      path: an existing `movieReviewSnippets_GroundTruth.txt` (default: the one
        `extract_rotten_tomatoes` put into the cache).

    Raises:
      FileNotFoundError: no snippets file there (it says how to fetch one).
    """
    path = Path(path) if path is not None else _default_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"no Rotten Tomatoes snippets at {path}: `pip download --no-deps --no-binary :all: {SDIST} -d DIR`, "
            "then aimc_jax.data.extract_rotten_tomatoes('DIR/vaderSentiment-3.3.2.tar.gz')"
        )
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
