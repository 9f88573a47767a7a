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


def tiny_encoder(num_labels: int | None, *, vocab_size: int = 30522, seed: int = 0):
    """(module, variables) of a tiny random BERT built from `jax.eval_shape` + numpy (no jitted init).

    The default vocabulary is all-MiniLM-L6-v2's, so its tokenizer can feed it.
    """
    from aimc_jax.models import Encoder, EncoderConfig, random_variables

    config = EncoderConfig(
        model_type="bert",
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=130,
        num_labels=num_labels,
    )
    module = Encoder(config)
    return module, random_variables(module, seed=seed)


_WORDS = {1: ("good", "great", "fine", "lovely", "superb"), 0: ("bad", "awful", "dull", "poor", "boring")}


def write_toy_glue(root, *, n_train: int = 96, n_dev: int = 40, seed: int = 0):
    """A GLUE-layout directory with a learnable toy SST-2 (label = sentiment word) and STS-B."""
    from pathlib import Path

    rng = np.random.default_rng(seed)
    root = Path(root)

    def sentence(label):
        return f"the film was {rng.choice(_WORDS[label])} {'and long ' * int(rng.integers(0, 4))}."

    (root / "SST-2").mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        labels = rng.integers(0, 2, n)
        rows = ["sentence\tlabel"] + [f"{sentence(int(y))}\t{y}" for y in labels]
        (root / "SST-2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (root / "STS-B").mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [header]
        for i in range(n):
            y = float(rng.uniform(0, 5))
            rows.append(f"{i}\tg\tf\t2012\t{i:04d}\tnone\tnone\t{sentence(1)}\t{sentence(int(y > 2.5))}\t{y:.3f}")
        (root / "STS-B" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root
