"""Training: floating-point and hardware-aware (HWA) fine-tuning on GLUE tasks, resumable and cached."""

from aimc_jax.training._finetune import (
    DamagedCheckpoint,
    FinetuneConfig,
    check_checkpoint,
    finetune,
    load_finetuned,
    make_train_step,
    task_loss,
)
from aimc_jax.training._glue_models import GlueModel, glue_model, hwa_glue_model, hwa_recipe, recipe
from aimc_jax.training._hwa import (
    HWAConfig,
    HWADense,
    add_input_ranges,
    clip_weights,
    hwa_dense_factory,
    log_space,
    range_optimizer,
    split_hwa_variables,
)

__all__ = [
    "DamagedCheckpoint",
    "FinetuneConfig",
    "GlueModel",
    "HWAConfig",
    "HWADense",
    "add_input_ranges",
    "check_checkpoint",
    "clip_weights",
    "finetune",
    "glue_model",
    "hwa_dense_factory",
    "hwa_glue_model",
    "hwa_recipe",
    "load_finetuned",
    "log_space",
    "make_train_step",
    "range_optimizer",
    "recipe",
    "split_hwa_variables",
    "task_loss",
]
