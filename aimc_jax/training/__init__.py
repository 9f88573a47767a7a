"""Training: floating-point fine-tuning on GLUE tasks (resumable, cached per task)."""

from aimc_jax.training._finetune import FinetuneConfig, finetune, load_finetuned, task_loss
from aimc_jax.training._glue_models import GlueModel, glue_model, recipe

__all__ = ["FinetuneConfig", "GlueModel", "finetune", "glue_model", "load_finetuned", "recipe", "task_loss"]
