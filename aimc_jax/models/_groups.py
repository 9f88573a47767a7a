"""Layer groups of a transformer encoder, derived from the dense layers' names.

    groups = layer_groups(aj.analog_layers(variables, config))  # {group: [layer names]}

BERT and RoBERTa (Hugging Face names, unrolled `layer_<i>` or scanned `layers`) share
the groups below; a name that fits none lands in "other", so any model gets a
partition of its layers (used to report what PT changed and to configure layers by role).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["GROUPS", "layer_group", "layer_groups"]

# (group, regex on the layer name), first match wins
GROUPS = (
    ("query/key/value", r"(^|/)attention/self/(query|key|value)$"),
    ("attention output", r"(^|/)attention/output/dense$"),
    ("FFN in (intermediate)", r"(^|/)intermediate/dense$"),
    ("FFN out", r"(^|/)(layer_\d+|layers)/output/dense$"),
    ("pooler + classifier", r"^(pooler|classifier)(/|$)"),
)
_COMPILED = tuple((g, re.compile(p)) for g, p in GROUPS)


def layer_group(name: str) -> str:
    """The group of one layer name ("other" when none fits)."""
    return next((g for g, p in _COMPILED if p.search(name)), "other")


def layer_groups(names: Iterable[str]) -> dict[str, list[str]]:
    """{group: sorted layer names} over `names` (any iterable of names, e.g. a ranges or layers dict), in
    `GROUPS` order with "other" last; groups without a layer are left out."""
    out: dict[str, list[str]] = {g: [] for g, _ in GROUPS}
    out["other"] = []
    for name in sorted(names):
        out[layer_group(name)].append(name)
    return {g: v for g, v in out.items() if v}
