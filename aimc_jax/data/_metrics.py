"""Official GLUE metrics, computed with scikit-learn and scipy.

`compute_metrics(task, outputs, labels)` takes model outputs (logits (n, classes),
or (n,) / (n, 1) regression scores for STS-B) and returns {metric: value} with the
task's headline metric first (`TaskSpec.metrics`). Values are fractions (0.85,
not 85).

References:
  Wang et al., GLUE (ICLR 2019), Table 1 (metrics per task).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from aimc_jax.data._glue import TaskSpec, task_spec

__all__ = ["compute_metrics", "predictions"]


def predictions(task: str | TaskSpec, outputs) -> np.ndarray:
    """Class indices (argmax of logits), or float scores for a regression task."""
    spec = task_spec(task)
    outputs = np.asarray(outputs)
    if spec.is_regression:
        return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64)
    if outputs.ndim != 2 or outputs.shape[1] != spec.num_labels:
        raise ValueError(f"{spec.name}: expected logits of shape (n, {spec.num_labels}), got {outputs.shape}")
    return np.argmax(outputs, axis=1)


def compute_metrics(task: str | TaskSpec, outputs, labels) -> dict[str, float]:
    """The task's official metrics.

    Args:
      task: task name or `TaskSpec`.
      outputs: logits (n, num_labels), or scores (n,) / (n, 1) for STS-B.
      labels: (n,) class indices, or float scores for STS-B.

    Returns:
      {metric name: float}, headline metric first.
    """
    spec = task_spec(task)
    bad = ~np.isfinite(np.asarray(outputs, np.float64))
    if bad.any():
        rows = int(bad.reshape(len(bad), -1).any(axis=1).sum()) if bad.ndim else 1
        raise ValueError(
            f"{spec.name}: {rows} of {len(bad) if bad.ndim else 1} rows of model outputs are NaN or inf; "
            "nothing to score (out-of-range token ids, or non-finite weights or ranges upstream?)"
        )
    pred, labels = predictions(spec, outputs), np.asarray(labels)
    if len(pred) != len(labels):
        raise ValueError(f"{spec.name}: {len(pred)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError(f"{spec.name}: no examples to score")
    out = {}
    for name in spec.metrics:
        if name == "accuracy":
            out[name] = float(skm.accuracy_score(labels, pred))
        elif name == "f1":
            out[name] = float(skm.f1_score(labels, pred, zero_division=0.0))
        elif name == "matthews":
            out[name] = float(skm.matthews_corrcoef(labels, pred))
        elif name == "pearson":
            out[name] = _correlation(stats.pearsonr, pred, labels)
        elif name == "spearman":
            out[name] = _correlation(stats.spearmanr, pred, labels)
        else:  # pragma: no cover - TASKS only names the metrics above
            raise ValueError(f"unknown metric {name!r}")
    if "f1" in spec.metrics and "accuracy" not in out:
        out["accuracy"] = float(skm.accuracy_score(labels, pred))
    return out


def _correlation(fn, pred, labels) -> float:
    if np.ptp(pred) == 0 or np.ptp(labels) == 0:
        return 0.0  # constant predictions carry no correlation (scipy would warn and return nan)
    return float(fn(pred, labels)[0])
