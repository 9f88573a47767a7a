"""Bad input never becomes a silent number: each case gives an error naming the culprit (issue 17)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def _toy_split(tmp_path, vocab):
    (tmp_path / "SST-2").mkdir(exist_ok=True)
    rows = ["sentence\tlabel"] + [f"a b c {i}\t{i % 2}" for i in range(6)]
    (tmp_path / "SST-2" / "dev.tsv").write_text("\n".join(rows) + "\n")
    split = load_glue("SST-2", "dev", tmp_path)

    class Tok:  # ids far beyond a 100-word table, as MiniLM's tokenizer would give
        pad_token_id = 0

        def __call__(self, a, *rest, **kw):
            return {"input_ids": [[1, vocab + 7, 2]] * len(a), "token_type_ids": [[0, 0, 0]] * len(a)}

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
