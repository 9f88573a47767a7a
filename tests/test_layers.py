"""The package imports only downwards: shared utilities < hardware model (`tile`) < data < network < evaluation
< PT, training < study.

Parses every module's imports (function-level ones included), so an upward or circular
import fails here before it fails at import time in some order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aimc_jax

ROOT = Path(aimc_jax.__file__).parent
# rank of each part; a module may import its own part and lower ranks; equal ranks of different parts
# may not import each other (PT and training share what they need through data and models)
RANK = {"shared": 0, "tile": 1, "data": 2, "models": 3, "evaluation": 4, "pt": 5, "training": 5, "study": 6, "top": 7}
# the root's private modules: utilities below the hardware model (checks, caches, devices, timing);
# the hardware model itself lives in `aimc_jax.tile`
SHARED = ("_cache", "_checks", "_logspace", "_parallel", "_timing")
ENTRY_POINTS = ("cli", "__main__")  # the command line calls every part, as the package itself may
# the protocol (`aimc_jax.study`) runs on top of everything; within the package only the command line may use it
STUDY_USERS = ("study", *ENTRY_POINTS)


def _part(module: str) -> str:
    """aimc_jax.<x>... -> its part: a subpackage name, "shared" for the root's utilities, "top" for the
    package itself and its command line."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ENTRY_POINTS:
        return "top"
    if parts[1] in RANK:
        return parts[1]
    assert parts[1] in SHARED, f"unplaced module {module}: give it a part in RANK (or a place in SHARED)"
    return "shared"


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "aimc_jax"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != "aimc_jax":
                continue
            if name == "aimc_jax":  # from aimc_jax import _pcm: the submodules themselves
                out |= {f"aimc_jax.{a.name}" for a in node.names}
            else:
                out.add(name)
    return out


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def _against_layering(module: str, targets) -> list[str]:
    """The imports of `module` that go up or sideways: "module (part) imports target (part)"."""
    src = _part(module)
    bad = []
    for target in sorted(targets):
        dst = _part(target)
        if dst == src or src == "top":
            continue
        if RANK[dst] > RANK[src] or (RANK[dst] == RANK[src] and dst != src):
            bad.append(f"{module} ({src}) imports {target} ({dst})")
    return bad


def test_no_upward_or_circular_imports():
    bad = [line for path, module in _modules() for line in _against_layering(module, _imports(path, module))]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_layer_check_refuses_upward_and_sideways_imports():
    assert not _against_layering("aimc_jax.tile._mvm", {"aimc_jax._checks", "aimc_jax.tile._rng"})
    assert not _against_layering("aimc_jax.models._analog", {"aimc_jax.tile", "aimc_jax.tile._program"})
    assert _against_layering("aimc_jax._checks", {"aimc_jax.tile._config"})  # a utility imports the hardware
    assert _against_layering("aimc_jax.tile._program", {"aimc_jax.models._analog"})  # the hardware a network
    assert _against_layering("aimc_jax.tile", {"aimc_jax.data"})
    assert _against_layering("aimc_jax.pt._io", {"aimc_jax.training"})  # sideways
    with pytest.raises(AssertionError, match="unplaced module"):  # hardware modules live in aimc_jax.tile
        _part("aimc_jax._pcm")


def _imports_study(module: str, targets) -> bool:
    """Whether `module` imports `aimc_jax.study` without being the study or the command line."""
    user = module.split(".")[1] if "." in module else "__init__"
    return user not in STUDY_USERS and any(_part(t) == "study" for t in targets)


def test_only_the_command_line_imports_the_study():
    bad = [module for path, module in _modules() if _imports_study(module, _imports(path, module))]
    assert not bad, "aimc_jax.study sits on top; only the command line may import it: " + ", ".join(bad)
    assert _imports_study("aimc_jax", {"aimc_jax.study"}) and _imports_study("aimc_jax.pt._io", {"aimc_jax.study"})
    assert not _imports_study("aimc_jax.cli", {"aimc_jax.study._run"})


def test_the_layer_check_sees_an_upward_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from aimc_jax.training import task_loss\n    from ..pt import _io\n")
    assert _imports(f, "aimc_jax.models.x") == {"aimc_jax.training", "aimc_jax.pt"}
    f.write_text("from . import _pcm\nfrom aimc_jax import tile\nfrom aimc_jax._checks import guard\n")
    assert _imports(f, "aimc_jax.tile._chain") == {"aimc_jax.tile", "aimc_jax._checks"}
