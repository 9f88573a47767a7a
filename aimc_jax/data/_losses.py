"""The training loss of a GLUE task, shared by fine-tuning, HWA training and PT objectives."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from aimc_jax.data._glue import TaskSpec

__all__ = ["task_loss"]


def task_loss(spec: TaskSpec, outputs, labels, weight):
    """Weighted mean loss: cross-entropy on logits, or squared error of output 0 (regression)."""
    if spec.is_regression:
        per = (outputs[:, 0] - labels.astype(jnp.float32)) ** 2
    else:
        per = optax.softmax_cross_entropy_with_integer_labels(outputs, labels.astype(jnp.int32))
    return jnp.sum(per * weight) / jnp.maximum(jnp.sum(weight), 1.0)
