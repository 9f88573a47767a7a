"""Bad input never becomes a silent number: each case gives an error naming the culprit (issue 17)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import aimc_jax as aj
from aimc_jax import pt
from aimc_jax.data import compute_metrics, encode, load_glue, make_batches
from aimc_jax.evaluation import evaluate_analog, evaluate_float

from ._tiny import tiny_encoder

HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"


@pytest.fixture(scope="module")
def small():
    """A tiny BERT with a 2-class head and a 100-word vocabulary."""
    return tiny_encoder(2, vocab_size=100)


def _ids(vocab, *, bad=None):
    ids = np.tile(np.arange(8, dtype=np.int32) + 5, (2, 1)) % vocab
    if bad is not None:
        ids[1, 3] = bad
    return jnp.asarray(ids)


@pytest.mark.parametrize("bad", [100, 5000, -1])
def test_out_of_range_token_ids_are_refused_eagerly(small, bad):
    module, variables = small
    module.apply(variables, _ids(100))  # in range: fine
    with pytest.raises(ValueError, match=r"input_ids: 1 ids outside \[0, 100\).*vocab_size"):
        module.apply(variables, _ids(100, bad=bad))


def test_out_of_range_token_types_are_refused(small):
    module, variables = small
    types = np.zeros((2, 8), np.int32)
    types[0, 0] = module.config.type_vocab_size
    with pytest.raises(ValueError, match=r"token_type_ids.*type_vocab_size"):
        module.apply(variables, _ids(100), None, jnp.asarray(types))


def _toy_split(tmp_path, vocab, middle=None):
    (tmp_path / "SST-2").mkdir(exist_ok=True)
    rows = ["sentence\tlabel"] + [f"a b c {i}\t{i % 2}" for i in range(6)]
    (tmp_path / "SST-2" / "dev.tsv").write_text("\n".join(rows) + "\n")
    split = load_glue("SST-2", "dev", tmp_path)

    middle = vocab + 7 if middle is None else middle  # default: beyond the table, as MiniLM's tokenizer would give

    class Tok:
        pad_token_id = 0

        def __call__(self, a, *rest, **kw):
            return {"input_ids": [[1, middle, 2]] * len(a), "token_type_ids": [[0, 0, 0]] * len(a)}

    return split, Tok()


def test_evaluators_refuse_ids_the_model_cannot_embed(small, tmp_path):
    module, variables = small
    split, tok = _toy_split(tmp_path, 100)
    batches = make_batches(encode(split, tok, max_length=6), 4)
    with pytest.raises(ValueError, match=r"input_ids.*outside"):
        evaluate_float(module, variables, batches, split)
    ranges = aj.init_model_ranges(variables, aj.TileConfig())
    with pytest.raises(ValueError, match=r"input_ids.*outside"):
        evaluate_analog(module, variables, ranges, batches, split, aj.TileConfig(), times=[1.0], seeds=1)


def test_metrics_refuse_non_finite_outputs():
    logits = np.zeros((5, 2), np.float32)
    logits[1, 0] = np.nan
    logits[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"SST-2: 2 of 5 rows of model outputs are NaN or inf"):
        compute_metrics("SST-2", logits, np.zeros(5, np.int32))
    with pytest.raises(ValueError, match=r"STS-B: 1 of 3 rows"):
        compute_metrics("STS-B", np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "high"])
def test_stsb_scores_must_be_finite_numbers(tmp_path, score):
    (tmp_path / "STS-B").mkdir()
    rows = [HEADER, "0\tg\tf\ty\t0\tn\tn\ta b\tc d\t2.5", f"1\tg\tf\ty\t1\tn\tn\te f\tg h\t{score}"]
    (tmp_path / "STS-B" / "dev.tsv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=rf"dev.tsv: row 2 has the score '{score}'"):
        load_glue("STS-B", "dev", tmp_path)


def test_t_read_beyond_t0_is_refused():
    with pytest.raises(ValueError, match=r"t_read .* must not exceed t0"):
        aj.TileConfig(t_read=21.0)
    cfg = aj.TileConfig(t_read=20.0)  # the edge: the factor is 0 at t = 0, finite
    w = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    r = aj.init_ranges(w, cfg)
    state = aj.read(aj.program(w, r, cfg, key=jax.random.key(0)), 0.0, cfg, key=jax.random.key(1))
    assert np.all(np.isfinite(np.asarray(state.weights)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_mvm_refuses_non_finite_inputs(value):
    cfg = aj.TileConfig()
    w = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    r = aj.init_ranges(w, cfg)
    state = aj.read(aj.program(w, r, cfg, key=jax.random.key(0)), 1.0, cfg, key=jax.random.key(1))
    x = np.ones((3, 16), np.float32)
    x[2, 5] = value
    with pytest.raises(ValueError, match="mvm: x contains NaN or inf"):
        aj.mvm(state, r, x, cfg, key=jax.random.key(2))


LAYER = "encoder/layer_0/attention/self/query"


def test_save_ranges_checks_them_against_the_model(small, tmp_path):
    _, variables = small
    cfg = aj.TileConfig()
    ranges = aj.init_model_ranges(variables, cfg)
    path = tmp_path / "r.npz"
    missing = {k: v for k, v in ranges.items() if k != LAYER}
    with pytest.raises(ValueError, match=r"missing \['encoder/layer_0/attention/self/query'\]"):
        pt.save_ranges(path, missing, config=cfg, variables=variables)
    with pytest.raises(ValueError, match=r"unexpected \['extra/layer'\]"):
        pt.save_ranges(path, {**ranges, "extra/layer": ranges[LAYER]}, config=cfg, variables=variables)
    wrong = {**ranges, LAYER: ranges[LAYER].replace(column=np.ones((1, 5), np.float32))}
    with pytest.raises(ValueError, match=r"layer 'encoder/layer_0/attention/self/query'.*column has shape \(1, 5\)"):
        pt.save_ranges(path, wrong, config=cfg, variables=variables)
    negative = {**ranges, LAYER: ranges[LAYER].replace(input=-ranges[LAYER].input)}
    with pytest.raises(ValueError, match="must be > 0"):
        pt.save_ranges(path, negative, config=cfg, variables=variables)
    assert not path.exists()


def _rewrite(path, out, change):
    """Copy a ranges file with `change(arrays)` applied to its arrays (header kept)."""
    with np.load(path) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    change(arrays)
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: a.__setitem__(f"{LAYER}::column", a[f"{LAYER}::column"] * np.nan), "NaN or inf"),
        (lambda a: a.__setitem__(f"{LAYER}::input", -a[f"{LAYER}::input"]), "must be > 0"),
        (lambda a: a.pop(f"{LAYER}::input"), "has no input ranges"),
        (lambda a: a.__setitem__(f"{LAYER}::column", a[f"{LAYER}::column"][:, :3]), "column has shape"),
    ],
)
def test_load_ranges_checks_the_saved_arrays(small, tmp_path, change, match):
    _, variables = small
    cfg = aj.TileConfig()
    path = pt.save_ranges(tmp_path / "r.npz", aj.init_model_ranges(variables, cfg), config=cfg, variables=variables)
    bad = _rewrite(path, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=match) as info:
        pt.load_ranges(bad, config=cfg, variables=variables)
    assert "bad.npz" in str(info.value) and LAYER in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", None])
def test_damaged_ranges_files_name_the_file(small, tmp_path, content):
    _, variables = small
    cfg = aj.TileConfig()
    path = pt.save_ranges(tmp_path / "r.npz", aj.init_model_ranges(variables, cfg), config=cfg, variables=variables)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)  # None: truncated
    for call in (lambda: pt.load_ranges(path, config=cfg, variables=variables), lambda: pt.read_meta(path)):
        with pytest.raises(ValueError, match=r"r\.npz is not a ranges file written by save_ranges, or it is damaged"):
            call()
    with pytest.raises(FileNotFoundError, match="no ranges file"):
        pt.load_ranges(tmp_path / "absent.npz", config=cfg, variables=variables)


def test_empty_inputs_name_what_is_empty(small, tmp_path):
    module, variables = small
    with pytest.raises(ValueError, match="input_ids has length 0"):
        module.apply(variables, jnp.zeros((2, 0), jnp.int32))
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("")
    with pytest.raises(ValueError, match=r"dev.tsv is empty"):
        load_glue("SST-2", "dev", tmp_path)
    w = np.ones((16, 8), np.float32)
    with pytest.raises(ValueError, match="calibration inputs have no rows"):
        aj.init_ranges(w, aj.TileConfig(), inputs=np.zeros((0, 16), np.float32))


def test_time_as_an_array_is_refused_by_name():
    cfg = aj.TileConfig()
    w = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    r = aj.init_ranges(w, cfg)
    chip = aj.program(w, r, cfg, key=jax.random.key(0))
    with pytest.raises(ValueError, match="read: t must be a scalar"):
        aj.read(chip, np.array([1.0, 2.0]), cfg, key=jax.random.key(1))
    with pytest.raises(ValueError, match="fresh_state: t must be a scalar"):
        aj.fresh_state(w, r, [1.0, 2.0], cfg, key_program=jax.random.key(0), key_read=jax.random.key(1))


# --- checked mode: the guards under jit (item 5) ---------------------------------------------------


def _tile_fn(cfg):
    def f(w, r, x, t):
        st = aj.fresh_state(w, r, t, cfg, key_program=jax.random.key(0), key_read=jax.random.key(1))
        return aj.mvm(st, r, x, cfg, key=jax.random.key(2))

    return f


def test_checked_mode_catches_under_jit_what_jit_hides():
    cfg = aj.TileConfig()
    w = jnp.asarray(np.random.default_rng(0).normal(size=(40, 24)).astype(np.float32))
    r = aj.init_ranges(w, cfg)
    x = jnp.ones((3, 40), jnp.float32)
    f = _tile_fn(cfg)
    good = aj.checked(f)(w, r, x, 3600.0)
    np.testing.assert_array_equal(good, jax.jit(f)(w, r, x, 3600.0))  # same numbers when nothing is wrong
    cases = {
        "fresh_state: weight contains NaN": (w.at[3, 2].set(jnp.nan), r, x, 3600.0),
        r"fresh_state: ranges.column must be > 0 everywhere \(min -": (w, aj.Ranges(-r.column, r.input), x, 3600.0),
        "fresh_state: ranges.input contains NaN": (w, aj.Ranges(r.column, r.input * jnp.inf * 0), x, 3600.0),
        "mvm: x contains NaN or inf": (w, r, x.at[1, 0].set(jnp.inf), 3600.0),
        r"drift time\(s\) t must be finite and >= 0 seconds, got -5": (w, r, x, -5.0),
    }
    for match, args in cases.items():
        jax.jit(f)(*args).block_until_ready()  # unchecked: a silent (NaN or finite wrong) number
        with pytest.raises(checkify.JaxRuntimeError, match=match):
            aj.checked(f)(*args)


def test_checked_mode_works_through_grad_and_vmap():
    cfg = aj.TileConfig()
    w = jnp.asarray(np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32))
    r = aj.init_ranges(w, cfg)
    f = _tile_fn(cfg)

    def loss(log_gamma, x):
        return jnp.sum(f(w, aj.Ranges(jnp.exp(log_gamma), r.input), x, 60.0) ** 2)

    g = aj.checked(jax.grad(loss))(jnp.log(r.column), jnp.ones((2, 16)))
    np.testing.assert_allclose(g, jax.jit(jax.grad(loss))(jnp.log(r.column), jnp.ones((2, 16))), rtol=1e-6)
    xs = jnp.ones((4, 2, 16)).at[2, 1, 5].set(jnp.nan)
    with pytest.raises(checkify.JaxRuntimeError, match="mvm: x contains NaN"):
        aj.checked(jax.vmap(lambda x: loss(jnp.log(r.column), x)))(xs)


def _nan_weight(variables, layer="encoder/layer_1/attention/self/value"):
    params = jax.tree_util.tree_map(np.array, variables["params"])
    node = params
    for part in layer.split("/"):
        node = node[part]
    node["kernel"][0, 0] = np.nan
    return {**variables, "params": params}


def test_evaluate_analog_checked_names_the_layer(small, tmp_path):
    module, variables = small
    split, tok = _toy_split(tmp_path, 100, middle=17)
    batches = make_batches(encode(split, tok, max_length=6), 4)
    cfg = aj.TileConfig()
    ranges = aj.init_model_ranges(variables, cfg)
    kw = dict(times=[3600.0], seeds=1, progress=False)
    ok = evaluate_analog(module, variables, ranges, batches, split, cfg, checked=True, **kw)
    assert ok.values == evaluate_analog(module, variables, ranges, batches, split, cfg, **kw).values
    bad = _nan_weight(variables)
    with pytest.raises(ValueError, match="non-finite"):  # unchecked: only the metrics notice
        evaluate_analog(module, bad, ranges, batches, split, cfg, **kw)
    with pytest.raises(checkify.JaxRuntimeError, match=r"layer_1/attention/self/value'\]: weight contains NaN"):
        evaluate_analog(module, bad, ranges, batches, split, cfg, checked=True, **kw)


def test_optimize_ranges_checked_names_the_layer(small):
    module, variables = small
    cfg = aj.TileConfig()
    ids = jnp.asarray(np.tile(np.arange(6, dtype=np.int32) + 5, (4, 1)))
    batch = {"input_ids": ids, "attention_mask": jnp.ones_like(ids), "labels": jnp.asarray([0, 1, 0, 1])}
    ranges = aj.init_model_ranges(variables, cfg)
    bad = _nan_weight(variables, "encoder/layer_0/intermediate/dense")
    objective = pt.task_objective(module, bad, cfg, "SST-2", t=3600.0)
    with pytest.raises(checkify.JaxRuntimeError, match=r"layer_0/intermediate/dense'\]: weight contains NaN"):
        pt.optimize_ranges(objective, ranges, [batch], learning_rate=0.01, steps=1, key=jax.random.key(0),
                           progress=False, checked=True)  # fmt: skip


def test_checked_mode_catches_nan_activations_inside_the_model(small):
    module, variables = small
    cfg = aj.TileConfig()
    params = jax.tree_util.tree_map(np.array, variables["params"])
    params["embeddings"]["word_embeddings"]["embedding"][7, 0] = np.nan  # a bad row reached by token 7
    bad = {**variables, "params": params}
    ranges = aj.init_model_ranges(variables, cfg)
    ids = _ids(100)

    def forward(v, r, ids):
        return aj.analog_forward(module, v, r, ids, jnp.ones_like(ids), cfg, t=3600.0, key=jax.random.key(0))

    assert np.isfinite(np.asarray(aj.checked(forward)(variables, ranges, ids))).all()
    with pytest.raises(checkify.JaxRuntimeError, match=r"layer 'encoder/layer_0/attention/self/\w+': input x"):
        aj.checked(forward)(bad, ranges, ids)


# --- damaged files name themselves -----------------------------------------------------------------


def _hf_checkpoint(tmp_path, kind="bert", num_labels=2):
    pytest.importorskip("torch")
    from ._tiny import tiny_hf_model

    d = tmp_path / f"{kind}-{num_labels}"
    tiny_hf_model(kind, num_labels).save_pretrained(d)
    return d


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: (d / "config.json").write_text('{"model_type": "bert", "hid'), r"config\.json is not valid JSON"),
        (lambda d: (d / "config.json").write_text("[1, 2]"), r"config\.json holds a JSON list"),
        (lambda d: (d / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}'),
         r"config\.json: the config lacks vocab_size, num_hidden_layers, num_attention_heads, intermediate_size"),
        (lambda d: (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()),
                                                              "hidden_size": "big"})),
         r"config\.json: hidden_size must be an integer, got .big."),
        (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000]),
         r"model\.safetensors cannot be read as safetensors.*damaged or truncated"),
        (lambda d: (d / "model.safetensors").write_bytes(b""), r"model\.safetensors cannot be read"),
    ],
)  # fmt: skip
def test_damaged_checkpoint_files_are_named(tmp_path, damage, match):
    from aimc_jax.models import from_pretrained

    d = _hf_checkpoint(tmp_path)
    damage(d)
    with pytest.raises(ValueError, match=match):
        from_pretrained(d)


def test_damaged_pytorch_bin_is_named(tmp_path):
    from aimc_jax.models import from_pretrained

    d = _hf_checkpoint(tmp_path)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin cannot be read"):
        from_pretrained(d)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_head_of_another_size_blames_the_head_not_config(tmp_path, caplog, kind):
    from aimc_jax.models import from_pretrained

    d = _hf_checkpoint(tmp_path, kind, num_labels=3)
    match = r"classification head of .* does not fit num_labels=2.*ignore_mismatched_sizes"
    with pytest.raises(ValueError, match=match) as e:
        from_pretrained(d, num_labels=2)
    assert "config.json" not in str(e.value)
    with caplog.at_level("WARNING", logger="aimc_jax"):
        module, variables = from_pretrained(d, num_labels=2, ignore_mismatched_sizes=True)
    assert "initialised" in caplog.text and module.config.num_labels == 2
    assert module.apply(variables, _ids(99)).shape == (2, 2)
    with pytest.raises(ValueError, match="strict=True"):
        from_pretrained(d, num_labels=2, ignore_mismatched_sizes=True, strict=True)


def _finetune_dir(tmp_path, small):
    from aimc_jax.data import Encoded
    from aimc_jax.training import FinetuneConfig, finetune

    module, variables = small
    ids = [np.arange(5, 11, dtype=np.int32) for _ in range(8)]
    train = Encoded(input_ids=ids, token_type_ids=[np.zeros(6, np.int32)] * 8, labels=np.arange(8) % 2, pad_token_id=0)
    cfg = FinetuneConfig(epochs=1.0, batch_size=4, checkpoint_every=1)

    def run(**kw):
        return finetune(module, variables, train, "SST-2", cfg, checkpoint_dir=tmp_path / "ft", progress=False, **kw)

    return run


@pytest.mark.parametrize("name", ["params.msgpack", "state.msgpack", "info.json"])
def test_damaged_finetuning_cache_is_named_and_can_be_discarded(tmp_path, small, caplog, name):
    from aimc_jax.training import DamagedCheckpoint

    run = _finetune_dir(tmp_path, small)
    first, _ = run()
    path = tmp_path / "ft" / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DamagedCheckpoint, match=rf"{name} is damaged.*discard_damaged=True"):
        run()
    with caplog.at_level("WARNING", logger="aimc_jax"):
        again, info = run(discard_damaged=True)
    assert "discarding the damaged checkpoint" in caplog.text and info["status"] == "done"
    for a, b in zip(jax.tree.leaves(first["params"]), jax.tree.leaves(again["params"]), strict=True):
        np.testing.assert_array_equal(a, b)  # retrained from scratch: the same seeded run
    run()  # the new checkpoint loads


def test_every_entry_point_applies_the_same_drift_time_rule():
    """t = 0 (the moment of programming) is accepted everywhere; negative or non-finite times nowhere."""
    from aimc_jax.evaluation import evaluate_analog
    from aimc_jax.pt._objectives import _check_times

    cfg = aj.TileConfig()
    w = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    r = aj.init_ranges(w, cfg)
    chip = aj.program(w, r, cfg, key=jax.random.key(0))
    variables = {"params": {"d": {"kernel": w, "bias": jnp.zeros(4, jnp.float32)}}}
    ranges = {"d": r}
    entry = {
        "read": lambda t: aj.read(chip, t, cfg, key=jax.random.key(1)),
        "fresh_state": lambda t: aj.fresh_state(
            w, r, t, cfg, key_program=jax.random.key(0), key_read=jax.random.key(1)
        ),
        "fresh_chip": lambda t: aj.fresh_chip(variables, ranges, cfg, t, key=jax.random.key(0)),
        "PT objective": _check_times,
        # a bad time is refused before the model, batches or split are looked at
        "evaluate_analog": lambda t: evaluate_analog(None, variables, ranges, [], None, cfg, seeds=1, times=(t,)),
    }
    for where, fn in entry.items():
        if where != "evaluate_analog":
            fn(0.0)  # accepted
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=r"drift time\(s\) t must be finite and >= 0 seconds"):
                fn(bad)
