"""Main job: the real all-MiniLM-L6-v2 on real SST-2 sentences, float vs analog over drift time.

    python experiments/main.py [--glue-dir DIR] [--train 2048] [--dev 256] [--seeds 3]

A linear probe (ridge regression on mean-pooled, normalised sentence embeddings,
the way all-MiniLM-L6-v2 is meant to be used) is fitted on float embeddings of SST-2
training sentences; then the dev sentences are embedded by the float model and by
analog chips (default `TileConfig`, naive ranges calibrated on training sentences)
read at 1 s, 1 h, 1 day and 1 year, one fresh chip per seed. Prints probe accuracy
and the cosine similarity of analog to float embeddings (mean +/- std over seeds).
GLUE data: --glue-dir, else $AIMC_GLUE_DIR, else ../shared/data/glue.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import aimc_jax as aj
from aimc_jax.models import from_pretrained, minilm_path

TIMES = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 year": 365 * 86400.0}


def read_sst2(glue_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
    path = glue_dir / "SST-2" / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"SST-2 not found: {path} (set --glue-dir or AIMC_GLUE_DIR)")
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows])


def features(e: np.ndarray) -> np.ndarray:
    """L2-normalised sentence embeddings (as sentence-transformers uses them) plus a bias column."""
    return np.c_[e / np.linalg.norm(e, axis=1, keepdims=True), np.ones(len(e))]


def fit_probe(e: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ridge regression to +/-1 targets; the ridge strength is picked on a quarter of the training sentences."""

    def solve(f, t, lam):
        return np.linalg.solve(f.T @ f + lam * np.eye(f.shape[1]), f.T @ t)

    f, t = features(e), 2.0 * y - 1
    cut = len(f) * 3 // 4
    lams = (0.1, 1.0, 10.0, 100.0)
    held_out = [np.mean((f[cut:] @ solve(f[:cut], t[:cut], lam) > 0) == y[cut:]) for lam in lams]
    return solve(f, t, lams[int(np.argmax(held_out))])


def glue_dir_from(arg: str | None) -> Path:
    for candidate in (arg, os.environ.get("AIMC_GLUE_DIR"), Path(__file__).resolve().parents[2] / "shared/data/glue"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise FileNotFoundError("no GLUE directory: pass --glue-dir or set AIMC_GLUE_DIR")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue-dir")
    parser.add_argument("--train", type=int, default=2048, help="training sentences for the probe")
    parser.add_argument("--dev", type=int, default=256, help="dev sentences scored")
    parser.add_argument("--seeds", type=int, default=3, help="analog chips (Monte-Carlo seeds)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    start = time.time()
    from transformers import AutoTokenizer

    glue = glue_dir_from(args.glue_dir)
    rng = np.random.default_rng(0)
    train_x, train_y = read_sst2(glue, "train")
    pick = rng.choice(len(train_x), args.train, replace=False)
    train_x, train_y = [train_x[i] for i in pick], train_y[pick]
    dev_x, dev_y = read_sst2(glue, "dev")
    dev_x, dev_y = dev_x[: args.dev], dev_y[: args.dev]

    tok = AutoTokenizer.from_pretrained(minilm_path())
    module, variables = from_pretrained(minilm_path())

    def batches(sentences):
        for i in range(0, len(sentences), args.batch):
            enc = tok(
                sentences[i : i + args.batch],
                padding="max_length",
                truncation=True,
                max_length=args.max_length,
                return_tensors="np",
            )
            yield {k: jnp.asarray(enc[k], jnp.int32) for k in ("input_ids", "attention_mask", "token_type_ids")}

    def pool(hidden, mask):
        m = mask[..., None].astype(jnp.float32)
        return jnp.sum(hidden * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)

    float_embed = jax.jit(
        lambda b: pool(
            module.apply(variables, b["input_ids"], b["attention_mask"], b["token_type_ids"]), b["attention_mask"]
        )
    )
    embed = lambda sents: np.concatenate([np.asarray(float_embed(b)) for b in batches(sents)])  # noqa: E731
    e_train, e_dev = embed(train_x), embed(dev_x)

    probe = fit_probe(e_train, train_y)

    def accuracy(e):
        return float(np.mean((features(e) @ probe > 0) == dev_y))

    config = aj.TileConfig()
    calibration = aj.collect_layer_inputs(module, variables, list(batches(train_x[:128])))
    ranges = aj.init_model_ranges(variables, config, calibration=calibration)
    program = jax.jit(lambda r, k: aj.program_model(variables, r, config, key=k))
    read = jax.jit(lambda c, t, k: aj.read_model(c, t, config, key=k))

    @jax.jit
    def analog_embed(r, s, b, k):
        h = aj.analog_apply(
            module,
            variables,
            r,
            s,
            b["input_ids"],
            b["attention_mask"],
            config,
            key=k,
            token_type_ids=b["token_type_ids"],
        )
        return pool(h, b["attention_mask"])

    dev_batches = list(batches(dev_x))
    results = {name: {"acc": [], "cos": []} for name in TIMES}
    with tqdm(total=args.seeds * len(TIMES), desc="analog chips x drift times") as bar:
        for seed in range(args.seeds):
            k_prog, k_read, k_mvm = jax.random.split(jax.random.key(seed), 3)
            chip = program(ranges, k_prog)
            for name, t in TIMES.items():
                state = read(chip, jnp.float32(t), k_read)
                e = np.concatenate(
                    [
                        np.asarray(analog_embed(ranges, state, b, jax.random.fold_in(k_mvm, i)))
                        for i, b in enumerate(dev_batches)
                    ]
                )
                cos = np.sum(e * e_dev, 1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(e_dev, axis=1))
                results[name]["acc"].append(accuracy(e))
                results[name]["cos"].append(float(np.mean(cos)))
                bar.update()

    n_tiles = aj.count_tiles(variables, config)
    print(
        f"\nall-MiniLM-L6-v2 + ridge probe on SST-2 ({args.train} train sentences, first {args.dev} dev sentences), "
        f"{n_tiles} crossbars, {args.seeds} chips (seeds 0..{args.seeds - 1})"
    )
    print("| model | drift time | probe accuracy | cosine to float embedding |")
    print("|---|---|---|---|")
    print(f"| float | - | {accuracy(e_dev):.4f} | 1 |")
    for name, r in results.items():
        acc, cos = np.array(r["acc"]), np.array(r["cos"])
        print(f"| analog | {name} | {acc.mean():.4f} +/- {acc.std():.4f} | {cos.mean():.4f} +/- {cos.std():.4f} |")
    print(f"\n(total {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
