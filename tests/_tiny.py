"""Tiny random transformers checkpoints for parity tests (no downloads)."""

import numpy as np


def tiny_hf_model(kind: str, num_labels: int | None, *, seed: int = 0):
    """A tiny random transformers model: kind in {'bert', 'roberta'}; None = no head."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        RobertaConfig,
        RobertaForSequenceClassification,
        RobertaModel,
    )

    torch.manual_seed(seed)
    common = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    if kind == "bert":
        config = BertConfig(**common, max_position_embeddings=24, hidden_act="gelu")
        classes = (BertModel, BertForSequenceClassification)
    else:
        config = RobertaConfig(
            **common, max_position_embeddings=26, pad_token_id=1, type_vocab_size=1, hidden_act="gelu_new"
        )
        classes = (RobertaModel, RobertaForSequenceClassification)
    if num_labels is None:
        return classes[0](config, add_pooling_layer=False).eval()
    config.num_labels = num_labels
    return classes[1](config).eval()


def tiny_batch(model, *, batch: int = 3, length: int = 11, seed: int = 0):
    """input_ids, attention_mask, token_type_ids (numpy int32) with padding in the batch."""
    rng = np.random.default_rng(seed)
    cfg = model.config
    ids = rng.integers(5, cfg.vocab_size, size=(batch, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, length - 4 :] = 0
    mask[-1, 3:] = 0
    ids[mask == 0] = cfg.pad_token_id
    types = np.zeros_like(ids)
    if cfg.type_vocab_size > 1:
        types[:, length // 2 :] = 1
    return ids, mask, types
