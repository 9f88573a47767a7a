"""EncoderConfig: the hashable, frozen description of a BERT/RoBERTa encoder.

Built from a transformers `BertConfig`/`RobertaConfig` with `EncoderConfig.from_hf`;
it is what the Flax module holds (transformers configs are not hashable).
"""

from __future__ import annotations

import dataclasses

__all__ = ["SUPPORTED_MODEL_TYPES", "EncoderConfig"]

SUPPORTED_MODEL_TYPES = ("bert", "roberta")
"""The Hugging Face `model_type`s `from_pretrained` and `EncoderConfig` accept."""
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number"}
_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish", "tanh")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Architecture of a BERT or RoBERTa encoder with an optional GLUE head.

    Attributes follow transformers' names. `num_labels=None` means no head (the
    module returns the last hidden states); 1 is regression.
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    num_labels: int | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and "None" in str(f.type):
                continue
            kind = str if f.type == "str" else int if f.type.startswith("int") else float
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = isinstance(value, str) if kind is str else number
            if not ok or (kind is int and value != int(value)):
                raise ValueError(f"{f.name} must be {_KIND_NAMES[kind]}, got {value!r}")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unsupported architecture model_type={self.model_type!r}; aimc_jax supports {SUPPORTED_MODEL_TYPES}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act={self.hidden_act!r}; supported: {_ACTIVATIONS}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.num_labels is not None and self.num_labels < 1:
            raise ValueError(f"num_labels must be None or >= 1, got {self.num_labels}")

    @property
    def position_offset(self) -> int:
        """RoBERTa numbers positions from pad_token_id + 1; BERT from 0."""
        return self.pad_token_id + 1 if self.model_type == "roberta" else 0

    @property
    def max_length(self) -> int:
        """The longest sequence the position table supports."""
        return self.max_position_embeddings - self.position_offset

    @classmethod
    def from_hf(cls, hf_config, *, num_labels: int | None = None) -> EncoderConfig:
        """From a transformers config (`BertConfig`, `RobertaConfig`, or its dict)."""
        d = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unsupported architecture in config.json: model_type={model_type!r} "
                f"(architectures={d.get('architectures')}); aimc_jax supports {SUPPORTED_MODEL_TYPES}"
            )
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"unsupported position_embedding_type={d['position_embedding_type']!r} (only 'absolute')")
        fields = {f.name for f in dataclasses.fields(cls)} - {"num_labels"}
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        lacking = [k for k in required if d.get(k) is None]
        if lacking:
            raise ValueError(f"the config lacks {', '.join(lacking)}")
        return cls(**{k: d[k] for k in fields if d.get(k) is not None}, num_labels=num_labels)

    def replace(self, **changes) -> EncoderConfig:
        return dataclasses.replace(self, **changes)
