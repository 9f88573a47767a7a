"""Flax BERT/RoBERTa encoders loaded from Hugging Face checkpoints.

`from_pretrained(path_or_name, num_labels=...) -> (module, variables)`;
`minilm_path()` finds the offline all-MiniLM-L6-v2. Every dense layer is built by
a pluggable factory, so the analog runtime (`aimc_jax.analog_apply`) can run them
on simulated crossbars.
"""

from aimc_jax.models._checkpoint import from_pretrained, load_state_dict, minilm_path, random_variables
from aimc_jax.models._config import SUPPORTED_MODEL_TYPES, EncoderConfig
from aimc_jax.models._encoder import Encoder
from aimc_jax.models._groups import layer_group, layer_groups

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "Encoder",
    "EncoderConfig",
    "from_pretrained",
    "layer_group",
    "layer_groups",
    "load_state_dict",
    "minilm_path",
    "random_variables",
]
