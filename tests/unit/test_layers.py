"""The layers of docs/architecture.md, enforced over the import graph of ``solo_clamp``.

Every module is parsed with ``ast`` (every import: at module level, in functions, under
``TYPE_CHECKING``) and placed in its layer by :data:`LAYERS`, the table of the architecture
page. A module imports only modules of its own layer or lower ones; a module of layer 1 (pure
torch) imports neither solo-learn nor Lightning, directly or through the solo_clamp modules it
imports; and imports sit at the top of a module except at the lazy boundary (the root
package, ``cli.py``, ``commands/``) and for the listed :data:`FUNCTION_IMPORTS`. The checks are
run against fake modules too, to show that each of them fails on a violation.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import pytest

PACKAGE = "solo_clamp"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / PACKAGE
ARCHITECTURE = PACKAGE_DIR.parent / "docs" / "architecture.md"

LAYERS: dict[int, tuple[str, ...]] = {
    1: ("version.py", "io.py", "configs/", "losses/", "geometry/", "data/"),
    2: ("internals.py", "checkpoints.py", "backbones.py", "evaluation.py", "provenance.py", "zoo/"),
    3: ("__init__.py", "methods/", "views.py"),
    4: ("training/",),
    5: ("compare/", "export/", "zoo/publish.py", "geometry_report.py"),
    6: ("cli.py", "__main__.py", "commands/"),
}
"""Paths relative to ``solo_clamp/``: ``name.py`` a module, ``name/`` a package and every module
under it; a module's own entry wins over its folder's (``zoo/publish.py`` over ``zoo/``)."""
TORCH_ONLY_LAYER = 1
FRAMEWORKS = ("solo", "lightning", "pytorch_lightning")
"""Top-level packages a torch-only module must not reach."""
LAZY_BOUNDARY = ("__init__.py", "cli.py", "commands/")
"""Modules that may import inside the function that runs a subcommand (or registers the
methods), so that ``import solo_clamp`` and ``solo-clamp --help`` load neither torch nor
solo-learn."""
FUNCTION_IMPORTS: dict[tuple[str, str], str] = {
    ("internals.py", "solo.methods.base"): "solo-learn is optional; the backbone loader "
    "(export, zoo) imports internals without it",
    ("evaluation.py", "solo.utils.knn"): "solo-learn is optional; the linear and few-label "
    "probes serve torch-only users",
    ("data/prepare.py", "torchvision.datasets"): "torch only for the download fallback: "
    "prepare-data (and --help, which lists its datasets) stay torch-free",
    ("training/checks.py", "nvidia.dali"): "DALI is optional (the dali extra)",
    ("training/pretrain.py", "solo.data.dali_dataloader"): "imports nvidia.dali, optional",
    ("zoo/download.py", "huggingface_hub"): "optional (the hub extra)",
}
"""The imports inside functions outside the lazy boundary: ``(module, imported) -> why``."""


@dataclass(frozen=True)
class Import:
    module: str
    """The imported module's path relative to ``solo_clamp/`` (``zoo/download.py``), or the
    dotted name of a module outside the package (``solo.methods``)."""
    line: int
    in_function: bool
    type_checking: bool


def module_path(dotted: str, modules: Mapping[str, str]) -> str | None:
    """``solo_clamp.zoo.download`` -> ``zoo/download.py`` (``zoo/__init__.py`` for a package);
    None outside the package or when no such module exists."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    base = "/".join(parts[1:])
    for candidate in (f"{base}.py", f"{base}/__init__.py" if base else "__init__.py"):
        if candidate in modules:
            return candidate
    return None


def _dotted(path: str) -> str:
    parts = [PACKAGE, *path[: -len(".py")].split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: str, source: str, modules: Mapping[str, str]) -> list[Import]:
    """Every import of the module ``path`` (its source given), resolved to module paths."""
    found: list[Import] = []
    package = _dotted(path) if path.endswith("__init__.py") else _dotted(path).rpartition(".")[0]

    def add(dotted: str, node: ast.stmt, in_function: bool, type_checking: bool) -> None:
        found.append(
            Import(module_path(dotted, modules) or dotted, node.lineno, in_function, type_checking)
        )

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child, in_function, type_checking)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the module's package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    submodule = f"{base}.{alias.name}"
                    named = submodule if module_path(submodule, modules) else base
                    add(named, child, in_function, type_checking)
            function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            guarded = isinstance(child, ast.If) and _is_type_checking(child)
            visit(child, in_function or function, type_checking or guarded)

    visit(ast.parse(source), False, False)
    return found


def layer_of(path: str, layers: Mapping[int, tuple[str, ...]]) -> int | None:
    """The layer of a module path: its own entry, else its closest folder's; None: unplaced."""
    best: tuple[int, int] | None = None
    for layer, entries in layers.items():
        for entry in entries:
            if entry == path or (entry.endswith("/") and path.startswith(entry)):
                rank = len(entry) + (1000 if entry == path else 0)
                if best is None or rank > best[0]:
                    best = (rank, layer)
    return None if best is None else best[1]


def _packages_run(path: str) -> list[str]:
    """The package ``__init__`` modules that importing ``path`` runs, the root's excepted: its
    module level imports only layers 1-2 (:func:`test_the_root_package_loads_no_methods`)."""
    folders = path.split("/")[:-1]
    return [f"{'/'.join(folders[:i])}/__init__.py" for i in range(1, len(folders) + 1)]


class ImportGraph:
    """The modules of a package (path -> source) and their imports."""

    def __init__(self, sources: Mapping[str, str]):
        self.sources = dict(sources)
        self.imports = {path: imports_of(path, src, sources) for path, src in sources.items()}

    @classmethod
    def of_package(cls) -> ImportGraph:
        return cls(
            {
                path.relative_to(PACKAGE_DIR).as_posix(): path.read_text(encoding="utf-8")
                for path in sorted(PACKAGE_DIR.rglob("*.py"))
            }
        )

    def edges(self, path: str) -> Iterator[tuple[str, Import]]:
        """``(module, import)`` for every solo_clamp module that ``path`` makes Python load."""
        for imported in self.imports[path]:
            if imported.module in self.sources:
                for target in dict.fromkeys([imported.module, *_packages_run(imported.module)]):
                    if target != path:
                        yield target, imported

    def unplaced(self, layers: Mapping[int, tuple[str, ...]]) -> list[str]:
        return [path for path in self.sources if layer_of(path, layers) is None]

    def upward_imports(self, layers: Mapping[int, tuple[str, ...]]) -> list[str]:
        """One sentence per import of a module of a higher layer."""
        found = []
        for path in self.sources:
            own = layer_of(path, layers)
            for target, imported in self.edges(path):
                other = layer_of(target, layers)
                if own is not None and other is not None and other > own:
                    found.append(
                        f"{path} (layer {own}) imports {target} (layer {other}), line "
                        f"{imported.line}"
                    )
        return list(dict.fromkeys(found))

    def framework_reach(self, layers: Mapping[int, tuple[str, ...]]) -> list[str]:
        """One sentence per torch-only module that reaches solo-learn or Lightning: directly,
        or through the solo_clamp modules it imports (at any depth), with the chain."""
        found = []
        for start in (p for p in self.sources if layer_of(p, layers) == TORCH_ONLY_LAYER):
            chains = {start: [start]}
            todo = [start]
            while todo:
                path = todo.pop()
                for imported in self.imports[path]:
                    if imported.module.split(".")[0] in FRAMEWORKS:
                        chain = " -> ".join(chains[path])
                        found.append(f"{start} reaches {imported.module} via {chain}")
                for target, _ in self.edges(path):
                    if target not in chains:
                        chains[target] = [*chains[path], target]
                        todo.append(target)
        return list(dict.fromkeys(found))

    def function_imports(self, boundary: tuple[str, ...]) -> set[tuple[str, str]]:
        """``(module, imported)`` of the imports inside functions outside ``boundary``
        (``TYPE_CHECKING`` blocks left out: they never run)."""
        return {
            (path, imported.module)
            for path, imports in self.imports.items()
            if not any(path == b or (b.endswith("/") and path.startswith(b)) for b in boundary)
            for imported in imports
            if imported.in_function and not imported.type_checking
        }


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return ImportGraph.of_package()


def test_every_module_is_placed_in_a_layer(graph):
    assert graph.unplaced(LAYERS) == [], "add the module to LAYERS and docs/architecture.md"


def test_no_module_imports_a_higher_layer(graph):
    assert graph.upward_imports(LAYERS) == []


def test_torch_only_modules_reach_neither_solo_learn_nor_lightning(graph):
    assert graph.framework_reach(LAYERS) == []


def test_imports_sit_at_the_top_but_at_the_lazy_boundary(graph):
    assert graph.function_imports(LAZY_BOUNDARY) == set(FUNCTION_IMPORTS)


def test_the_root_package_loads_no_methods(graph):
    """``import solo_clamp.<anything>`` runs the root ``__init__``: at module level it imports
    layers 1-2 only (its layer-3 part, :func:`solo_clamp.register`, imports the methods when
    called), which is why :meth:`ImportGraph.edges` does not count it as a parent package."""
    top = [i.module for i in graph.imports["__init__.py"] if not i.in_function]
    assert {layer_of(m, LAYERS) for m in top if m in graph.sources} <= {1, 2}


def _page_rows() -> dict[int, set[str]]:
    """The architecture page's layer table: layer -> the paths in its modules column."""
    rows = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*(\d)\.[^|]*\|([^|]*)\|", line)
        if match:
            paths = re.findall(r"`([\w/]+(?:\.py|/))`", match.group(2))
            rows[int(match.group(1))] = set(paths)
    return rows


def test_the_architecture_page_has_the_same_layers():
    assert _page_rows() == {layer: set(entries) for layer, entries in LAYERS.items()}


def test_the_architecture_page_gives_each_import_inside_a_function():
    lines = ARCHITECTURE.read_text(encoding="utf-8").splitlines()
    for path, module in FUNCTION_IMPORTS:
        assert any(f"`{path}`" in line and f"`{module}`" in line for line in lines), (path, module)


# ------------------------------------------------------------- the checks fail on violations

FAKE_LAYERS = {1: ("losses/", "io.py"), 2: ("backbones.py",), 4: ("training/",)}


@pytest.mark.parametrize(
    "sources, check, expected",
    [
        (  # a module-level import of a higher layer
            {"losses/a.py": "from solo_clamp.training import run\n", "training/run.py": ""},
            "upward_imports",
            "losses/a.py (layer 1) imports training/run.py (layer 4), line 1",
        ),
        (  # the same inside a function, through `from package import module`
            {
                "losses/a.py": "def f():\n    from solo_clamp import backbones\n",
                "backbones.py": "",
            },
            "upward_imports",
            "losses/a.py (layer 1) imports backbones.py (layer 2), line 2",
        ),
        (  # importing a module runs its package's __init__
            {
                "backbones.py": "import solo_clamp.training.run\n",
                "training/__init__.py": "",
                "training/run.py": "",
            },
            "upward_imports",
            "backbones.py (layer 2) imports training/__init__.py (layer 4), line 1",
        ),
        (  # a torch-only module importing Lightning in a function
            {"losses/a.py": "def f():\n    import lightning.pytorch as pl\n"},
            "framework_reach",
            "losses/a.py reaches lightning.pytorch via losses/a.py",
        ),
        (  # ... or solo-learn through another torch-only module (a relative import)
            {
                "losses/a.py": "from . import b\n",
                "losses/b.py": "from .c import x\n",
                "losses/c.py": "from solo.methods import METHODS\n",
                "losses/__init__.py": "",
            },
            "framework_reach",
            "losses/a.py reaches solo.methods via losses/a.py -> losses/b.py -> losses/c.py",
        ),
    ],
)
def test_the_checks_find_a_violation(sources, check, expected):
    assert expected in getattr(ImportGraph(sources), check)(FAKE_LAYERS)


def test_a_new_module_must_be_placed():
    assert ImportGraph({"io.py": "", "reports/new.py": ""}).unplaced(FAKE_LAYERS) == [
        "reports/new.py"
    ]


def test_an_import_inside_a_function_is_found_but_not_under_type_checking():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\n"
        "def f():\n    import numpy\n"
        "class A:\n    def g(self):\n        from solo_clamp import io\n"
    )
    fake = ImportGraph(
        {"losses/a.py": source, "io.py": "", "cli.py": "def main():\n    import x\n"}
    )
    assert fake.function_imports(("cli.py",)) == {
        ("losses/a.py", "numpy"),
        ("losses/a.py", "io.py"),
    }
