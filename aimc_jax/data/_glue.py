"""GLUE tasks: task specifications and loaders for the official GLUE directory layout.

`load_glue(task, split, glue_dir)` reads `<glue_dir>/<TASK>/<split>.tsv` with the
real files' quirks handled (unbalanced quotes: `csv.QUOTE_NONE`; MRPC's byte-order
mark; CoLA without a header) and returns a `GlueSplit` of sentences and labels.
`task_splits` gives the (train, eval) pair used for fine-tuning and scoring.

References:
  Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for Natural
  Language Understanding (ICLR 2019); the official `download_glue_data.py` layout.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["TASKS", "GlueSplit", "TaskSpec", "glue_dir", "load_glue", "task_splits"]

GLUE_DIR_ENV = "AIMC_GLUE_DIR"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """How one GLUE task is stored and scored.

    Attributes:
      name: official task name (directory name), e.g. "SST-2".
      text: column(s) holding the sentence(s): one name, or two for pair tasks.
      label: label column.
      labels: label strings in class order (class i = labels[i]); None for regression.
      metrics: official metric names, the first one being the task's headline metric.
      splits: file stem per split name, as (split, stem) pairs (a dict is accepted and
        converted: the spec is immutable and hashable); `file_stem(split)` looks one up.
      header: whether the files have a header row (CoLA has none).
      columns: column names for header-less files.
    """

    name: str
    text: tuple[str, ...]
    label: str
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    splits: tuple[tuple[str, str], ...] = (("train", "train"), ("dev", "dev"))
    header: bool = True
    columns: tuple[str, ...] | None = None

    def __post_init__(self):
        pairs = self.splits.items() if isinstance(self.splits, Mapping) else self.splits
        object.__setattr__(self, "splits", tuple((str(k), str(v)) for k, v in pairs))

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.splits)

    def file_stem(self, split: str) -> str:
        """The file stem of `split` (ValueError naming the task's splits when it has none of that name)."""
        stems = dict(self.splits)
        if split not in stems:
            raise ValueError(f"{self.name} has no split {split!r}; splits: {', '.join(stems)}")
        return stems[split]

    @property
    def num_labels(self) -> int:
        """Output width of the classification head (1 for regression)."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None


_BINARY = ("0", "1")
_ENTAIL = ("entailment", "not_entailment")

_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            name="CoLA",
            text=("sentence",),
            label="label",
            labels=_BINARY,
            metrics=("matthews",),
            header=False,
            columns=("source", "label", "mark", "sentence"),
        ),
        TaskSpec(name="SST-2", text=("sentence",), label="label", labels=_BINARY, metrics=("accuracy",)),
        TaskSpec(
            name="MRPC", text=("#1 String", "#2 String"), label="Quality", labels=_BINARY, metrics=("f1", "accuracy")
        ),
        TaskSpec(
            name="STS-B", text=("sentence1", "sentence2"), label="score", labels=None, metrics=("pearson", "spearman")
        ),
        TaskSpec(
            name="QQP",
            text=("question1", "question2"),
            label="is_duplicate",
            labels=_BINARY,
            metrics=("accuracy", "f1"),
        ),
        TaskSpec(
            name="MNLI",
            text=("sentence1", "sentence2"),
            label="gold_label",
            labels=("contradiction", "entailment", "neutral"),
            metrics=("accuracy",),
            splits={
                "train": "train",
                "dev": "dev_matched",
                "dev_matched": "dev_matched",
                "dev_mismatched": "dev_mismatched",
            },
        ),
        TaskSpec(name="QNLI", text=("question", "sentence"), label="label", labels=_ENTAIL, metrics=("accuracy",)),
        TaskSpec(name="RTE", text=("sentence1", "sentence2"), label="label", labels=_ENTAIL, metrics=("accuracy",)),
        TaskSpec(name="WNLI", text=("sentence1", "sentence2"), label="label", labels=_BINARY, metrics=("accuracy",)),
    )
}
TASKS: Mapping[str, TaskSpec] = types.MappingProxyType(_TASKS)  # read-only: no change by accident
"""The GLUE tasks by name (`"SST-2"`, ...): their columns, labels and metrics, read-only."""

_ALIASES = {name.lower().replace("-", ""): name for name in TASKS}


def task_spec(task: str | TaskSpec) -> TaskSpec:
    """The `TaskSpec` of a task name (case and hyphen insensitive: "sst2" == "SST-2")."""
    if isinstance(task, TaskSpec):
        return task
    name = _ALIASES.get(str(task).lower().replace("-", "").replace("_", ""))
    if name is None:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


@dataclasses.dataclass(frozen=True)
class GlueSplit:
    """Sentences and labels of one split.

    Attributes:
      task: the `TaskSpec`.
      split: split name ("train", "dev", or a derived name such as "dev[half 0]").
      text_a: first sentences, length n.
      text_b: second sentences for pair tasks, else None.
      labels: (n,) int32 class indices, or float32 scores for STS-B.
      note: where the split came from when it is not the official file as is.
    """

    task: TaskSpec
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray
    note: str = ""

    def __len__(self) -> int:
        return len(self.text_a)

    def subset(self, index, split: str | None = None, note: str | None = None) -> GlueSplit:
        """The rows `index` (any integer index array), as a new split."""
        index = np.asarray(index, dtype=np.int64)
        return GlueSplit(
            task=self.task,
            split=split or self.split,
            text_a=[self.text_a[i] for i in index],
            text_b=None if self.text_b is None else [self.text_b[i] for i in index],
            labels=self.labels[index],
            note=self.note if note is None else note,
        )


def glue_dir(path: str | os.PathLike | None = None) -> Path:
    """The GLUE directory: `path`, else `$AIMC_GLUE_DIR`, else `../shared/data/glue` when present.

    `../shared/data/glue` is looked up beside the working directory and beside the
    repository holding this package (a source checkout).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"GLUE directory {p} does not exist")
        return p
    env = os.environ.get(GLUE_DIR_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"${GLUE_DIR_ENV}={env} is not a directory")
        return p
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        p = root.parent / "shared" / "data" / "glue"
        if p.is_dir():
            return p
    raise FileNotFoundError(
        f"no GLUE data found: pass a directory in the official GLUE layout (<TASK>/train.tsv, dev.tsv) "
        f"or set ${GLUE_DIR_ENV}"
    )


def load_glue(task: str | TaskSpec, split: str = "dev", glue_dir_: str | os.PathLike | None = None) -> GlueSplit:
    """Load one split of a GLUE task from the official layout.

    Args:
      task: task name ("SST-2", "sst2", ...) or a `TaskSpec`.
      split: "train" or "dev" (MNLI also "dev_matched", "dev_mismatched").
      glue_dir_: the GLUE directory (see `glue_dir`).

    Returns:
      A `GlueSplit`; labels are class indices in `spec.labels` order, STS-B scores as float32.

    Raises:
      FileNotFoundError: naming the missing file.
      ValueError: unknown task/split, or a row with an unexpected label or column count.
    """
    spec = task_spec(task)
    path = glue_dir(glue_dir_) / spec.name / f"{spec.file_stem(split)}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name} {split} split missing: {path} does not exist")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)
    if not any(rows):
        raise ValueError(f"{path} is empty: no {'header or ' if spec.header else ''}rows ({spec.name} {split})")
    if spec.header:
        columns, rows = rows[0], rows[1:]
    else:
        columns = list(spec.columns)
    rows = [r for r in rows if r]  # a trailing blank line is not a row
    width = len(columns)
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"{path}: row {i + 1} has {len(r)} columns, expected {width}")
    missing = [c for c in (*spec.text, spec.label) if c not in columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} not in header {columns}")
    col = {c: j for j, c in enumerate(columns)}
    text_a = [r[col[spec.text[0]]] for r in rows]
    text_b = [r[col[spec.text[1]]] for r in rows] if len(spec.text) > 1 else None
    raw = [r[col[spec.label]] for r in rows]
    if spec.is_regression:
        labels = _scores(raw, path)
    else:
        index = {v: i for i, v in enumerate(spec.labels)}
        bad = sorted({v for v in raw if v not in index})
        if bad:
            raise ValueError(f"{path}: labels {bad[:5]} not in {spec.labels}")
        labels = np.array([index[v] for v in raw], np.int32)
    return GlueSplit(task=spec, split=split, text_a=text_a, text_b=text_b, labels=labels)


def _scores(raw: list[str], path) -> np.ndarray:
    """Regression labels as float32; ValueError naming the file and row for a non-numeric or non-finite one."""
    out = np.empty(len(raw), np.float32)
    for i, v in enumerate(raw):
        try:
            out[i] = float(v)
        except ValueError:
            raise ValueError(f"{path}: row {i + 1} has the score {v!r}, not a number") from None
        if not np.isfinite(out[i]):
            raise ValueError(f"{path}: row {i + 1} has the score {v!r}, not a finite number")
    return out


def task_splits(
    task: str | TaskSpec, glue_dir_: str | os.PathLike | None = None, *, seed: int = 0
) -> tuple[GlueSplit, GlueSplit]:
    """(train, eval) splits for fine-tuning and scoring a task.

    Normally the official train and dev files. When a task's train file is absent
    but its dev file is present (QNLI offline), dev is split in two halves with a
    fixed permutation from `seed`: fine-tune on "dev[half 0]", score on
    "dev[half 1]"; both carry a `note` saying so, to be printed with every number.
    """
    spec = task_spec(task)
    try:
        return load_glue(spec, "train", glue_dir_), load_glue(spec, "dev", glue_dir_)
    except FileNotFoundError:
        dev = load_glue(spec, "dev", glue_dir_)  # raises if dev is missing too
        if (glue_dir(glue_dir_) / spec.name / "train.tsv").is_file():
            raise
    perm = np.random.default_rng(seed).permutation(len(dev))
    half = len(dev) // 2
    note = (
        f"{spec.name} train.tsv absent: fine-tuned on a seeded half of dev ({half} rows, seed {seed}), "
        f"scored on the other half ({len(dev) - half} rows)"
    )
    return (
        dev.subset(np.sort(perm[:half]), split="dev[half 0]", note=note),
        dev.subset(np.sort(perm[half:]), split="dev[half 1]", note=note),
    )
