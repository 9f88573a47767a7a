"""MkDocs hooks: CHANGELOG.md as a page, and checks that fail `mkdocs build --strict`.

- `on_files`: the top-level CHANGELOG.md becomes the page `changelog.md` (one source).
- `on_post_build`: every name in the `__all__` of a documented module has an entry in
  the API reference (a name without a docstring would silently drop out of it), and every
  relative link in README.md and CHANGELOG.md points at a file that exists.

Problems are logged as warnings, which `--strict` turns into a failed build.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.aimc_jax")

ROOT = Path(__file__).resolve().parent.parent
# module -> its API page under the site directory
API_PAGES = {
    "aimc_jax": "api/index.html",
    "aimc_jax.tile": "api/tile/index.html",
    "aimc_jax.models": "api/models/index.html",
    "aimc_jax.data": "api/data/index.html",
    "aimc_jax.evaluation": "api/evaluation/index.html",
    "aimc_jax.pt": "api/pt/index.html",
    "aimc_jax.training": "api/training/index.html",
    "aimc_jax.study": "api/study/index.html",
    "aimc_jax.cli": "api/cli/index.html",
}
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def on_files(files, config):
    files.append(File.generated(config, "changelog.md", content=(ROOT / "CHANGELOG.md").read_text()))
    return files


def _all_names(module: str) -> list[str]:
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    log.warning("%s has no __all__", module)
    return []


def on_post_build(config):
    site = Path(config["site_dir"])
    for module, page in API_PAGES.items():
        html = (site / page).read_text()
        missing = [n for n in _all_names(module) if f'id="{module}.{n}"' not in html]
        if missing:
            log.warning("API reference %s lacks %s (give them a docstring)", page, ", ".join(missing))
    for doc in ("README.md", "CHANGELOG.md"):
        for target in _LINK.findall((ROOT / doc).read_text()):
            if re.match(r"[a-z]+:|#", target):
                continue
            if not (ROOT / target.split("#")[0]).exists():
                log.warning("%s links to %s, which does not exist", doc, target)
