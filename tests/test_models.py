"""Parity of the Flax encoder with transformers' PyTorch models, and loader errors."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aimc_jax.models import EncoderConfig, from_pretrained, minilm_path  # noqa: E402

from ._tiny import tiny_batch, tiny_hf_model  # noqa: E402


def _torch_out(model, ids, mask, types):
    with torch.no_grad():
        out = model(
            torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            token_type_ids=torch.tensor(types, dtype=torch.long),
        )
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("num_labels", [3, 1, None])
def test_parity_with_transformers(tmp_path, kind, num_labels):
    model = tiny_hf_model(kind, num_labels)
    model.save_pretrained(tmp_path)
    module, variables = from_pretrained(tmp_path)
    assert module.config.num_labels == num_labels
    ids, mask, types = tiny_batch(model)
    ref = _torch_out(model, ids, mask, types)
    out = np.asarray(module.apply(variables, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)))
    if num_labels is None:  # hidden states: compare real tokens (padding rows are undefined)
        out, ref = out[mask > 0], ref[mask > 0]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_pytorch_model_bin_checkpoint(tmp_path):
    model = tiny_hf_model("roberta", 2)
    model.save_pretrained(tmp_path)  # transformers 5 writes safetensors only: convert by hand
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    module, variables = from_pretrained(tmp_path)
    ids, mask, types = tiny_batch(model)
    out = np.asarray(module.apply(variables, jnp.asarray(ids), jnp.asarray(mask)))
    np.testing.assert_allclose(out, _torch_out(model, ids, mask, types), atol=1e-5, rtol=0)


def test_missing_head_is_initialised_seeded_and_reported(tmp_path, caplog):
    tiny_hf_model("bert", None).save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="aimc_jax"):
        _, a = from_pretrained(tmp_path, num_labels=4, seed=3)
    assert "classifier/kernel" in caplog.text and "pooler/dense/kernel" in caplog.text
    _, b = from_pretrained(tmp_path, num_labels=4, seed=3)
    _, c = from_pretrained(tmp_path, num_labels=4, seed=4)
    ka, kb, kc = (np.asarray(v["params"]["classifier"]["kernel"]) for v in (a, b, c))
    assert ka.shape == (32, 4) and np.array_equal(ka, kb) and not np.array_equal(ka, kc)


def test_unused_checkpoint_weights_are_reported_and_strict_refuses(tmp_path, caplog):
    tiny_hf_model("bert", 2).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["num_hidden_layers"] = 1  # the weights have 2 layers
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with caplog.at_level("WARNING", logger="aimc_jax"):
        module, _ = from_pretrained(tmp_path)
    assert module.config.num_hidden_layers == 1
    assert (
        "not used by this config" in caplog.text and "bert.encoder.layer.1.attention.self.query.weight" in caplog.text
    )
    with pytest.raises(ValueError, match=r"weights of .* are not used by this config.*strict=True"):
        from_pretrained(tmp_path, strict=True)
    cfg["num_hidden_layers"] = 2
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    caplog.clear()
    with caplog.at_level("WARNING", logger="aimc_jax"):
        from_pretrained(tmp_path, strict=True)  # every weight used: no error, no warning
    assert "not used" not in caplog.text
    headless = tmp_path / "headless"
    tiny_hf_model("bert", None).save_pretrained(headless)
    with pytest.raises(ValueError, match=r"no head weights.*strict=True"):
        from_pretrained(headless, num_labels=3, strict=True)


@pytest.mark.integration
def test_real_minilm_hidden_states_match_transformers():
    from transformers import AutoTokenizer, BertModel

    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    sentences = ["A gripping, beautifully acted film.", "dull", "It is not what I expected, but I liked it a lot."]
    enc = tok(sentences, padding=True, return_tensors="np")
    ids, mask, types = (enc[k].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids"))
    ref = _torch_out(BertModel.from_pretrained(path).eval(), ids, mask, types)
    module, variables = from_pretrained(path)
    assert module.config == EncoderConfig.from_hf(json.loads((path / "config.json").read_text()))
    out = np.asarray(module.apply(variables, ids, mask, types))
    np.testing.assert_allclose(out[mask > 0], ref[mask > 0], atol=1e-4, rtol=0)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        from_pretrained(tmp_path / "nope")
    model = tiny_hf_model("bert", 2)
    good = tmp_path / "good"
    model.save_pretrained(good)

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(good / "config.json", no_weights)
    with pytest.raises(FileNotFoundError, match="no weight file"):
        from_pretrained(no_weights)

    no_config = tmp_path / "no_config"
    shutil.copytree(good, no_config)
    (no_config / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        from_pretrained(no_config)

    for name, change, match in [
        ("gpt", {"model_type": "gpt2"}, "unsupported architecture"),
        ("wide", {"hidden_size": 48, "num_attention_heads": 4}, "shape mismatch .* config"),
    ]:
        bad = tmp_path / name
        shutil.copytree(good, bad)
        cfg = json.loads((bad / "config.json").read_text())
        cfg.update(change)
        (bad / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(ValueError, match=match):
            from_pretrained(bad)

    module, variables = from_pretrained(good)
    too_long = jnp.ones((1, module.config.max_length + 1), jnp.int32)
    with pytest.raises(ValueError, match="exceeds the position table"):
        module.apply(variables, too_long)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_layer_groups_partition_the_encoder_by_role(model_type):
    import jax

    import aimc_jax as aj
    from aimc_jax.models import Encoder, layer_group, layer_groups

    extra = dict(vocab_size=99, max_position_embeddings=40, pad_token_id=1 if model_type == "roberta" else 0)
    config = EncoderConfig(
        model_type=model_type, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        num_labels=3, **extra,
    )  # fmt: skip
    shapes = jax.eval_shape(Encoder(config).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), jnp.int32))
    names = list(aj.analog_layers(shapes, aj.TileConfig()))
    groups = layer_groups(names)
    assert sorted(n for v in groups.values() for n in v) == sorted(names)  # a partition
    assert "other" not in groups
    assert len(groups["query/key/value"]) == 6 and len(groups["FFN out"]) == 2
    assert groups["FFN in (intermediate)"] == [f"encoder/layer_{i}/intermediate/dense" for i in (0, 1)]
    assert all(n.startswith(("pooler", "classifier")) for n in groups["pooler + classifier"])
    assert layer_group("encoder/layers/output/dense") == "FFN out"  # scanned names
    assert layer_group("encoder/layer_3/attention/output/dense") == "attention output"
    assert layer_group("mlp/fc1") == "other"
