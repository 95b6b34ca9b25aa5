"""The layers of docs/architecture.md, enforced over the import graph of ``solo_clamp``.

Every module is parsed with ``ast`` (every import: at module level, in functions, under
``TYPE_CHECKING``, and ``importlib.import_module`` calls with a literal name) and placed in its
layer by :data:`LAYERS`, the table of the architecture page. A module imports only modules of its
own layer or lower ones; a module of layer 1 (pure torch) imports neither solo-learn nor
Lightning, directly or through the solo_clamp modules it imports; and imports sit at the top of a
module except at the lazy boundary (the root package, ``cli.py``, ``commands/``) and for the
listed :data:`FUNCTION_IMPORTS`. Two more rules: no module but ``internals.py`` touches a private
name of Lightning or solo-learn (:data:`PRIVATE_HOME`), and no module outside ``methods/`` and
``losses/`` spells a method's name (:data:`METHOD_NAMES`). An empty or unreadable graph fails
every test. The checks are run against fake modules too, to show that each of them fails on a
violation.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

import pytest

PACKAGE = "solo_clamp"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / PACKAGE
ARCHITECTURE = PACKAGE_DIR.parent / "docs" / "architecture.md"

LAYERS: dict[int, tuple[str, ...]] = {
    1: (
        "version.py",
        "errors.py",
        "io.py",
        "validation.py",
        "configs/",
        "losses/",
        "geometry/",
        "data/",
    ),
    2: ("internals.py", "checkpoints.py", "backbones.py", "evaluation.py", "provenance.py", "zoo/"),
    3: ("__init__.py", "methods/", "views.py"),
    4: ("training/",),
    5: (
        "compare/",
        "export/",
        "zoo/publish.py",
        "geometry/report.py",
        "geometry/report_transport.py",
    ),
    6: ("cli.py", "__main__.py", "commands/"),
}
"""Paths relative to ``solo_clamp/``: ``name.py`` a module, ``name/`` a package and every module
under it; a module's own entry wins over its folder's (``zoo/publish.py`` over ``zoo/``,
``geometry/report.py`` over ``geometry/``)."""
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

PRIVATE_HOME = ("internals.py",)
"""The one module that may read or write Lightning's and solo-learn's private names."""
PRIVATE_ALLOWED: dict[tuple[str, str], str] = {}
"""Known violations of the private-name rule, ``(module, expression) -> why``, each to be
removed when the module is fixed; the test fails on any other and on a listed one that is gone."""
METHOD_NAMES = ("clamp", "manifoldclr", "simclr", "byol", "vicreg")
"""The names of the registered methods (``test_method_names_are_the_registered_ones``)."""
NAME_HOMES = ("methods/", "losses/")
"""Where a method's name may be spelled as a string; elsewhere it is read from its facts."""
HELP_KEYWORDS = ("help", "description", "epilog", "usage")
"""Keyword arguments whose strings are CLI help text (which may name methods)."""
METHOD_NAMES_ALLOWED: dict[tuple[str, str], str] = {}
"""Known violations of the method-name rule, ``(module, name) -> why`` (none today)."""


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


def _imported_by_call(node: ast.Call) -> Optional[str]:
    """The module of ``importlib.import_module("a.b")`` (or ``import_module("a.b")``) with a
    literal name; None for any other call."""
    func = node.func
    named = (
        isinstance(func, ast.Attribute) and ast.unparse(func) == "importlib.import_module"
    ) or (isinstance(func, ast.Name) and func.id == "import_module")
    if named and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) and not value.startswith(".") else None
    return None


def imports_of(path: str, source: str, modules: Mapping[str, str]) -> list[Import]:
    """Every import of the module ``path`` (its source given), resolved to module paths."""
    found: list[Import] = []
    package = _dotted(path) if path.endswith("__init__.py") else _dotted(path).rpartition(".")[0]

    def add(dotted: str, node: ast.AST, in_function: bool, type_checking: bool) -> None:
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
            elif isinstance(child, ast.Call) and _imported_by_call(child):
                add(_imported_by_call(child), child, in_function, type_checking)
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
        self.trees = {path: ast.parse(source) for path, source in self.sources.items()}
        self.imports = {path: imports_of(path, src, sources) for path, src in sources.items()}

    @classmethod
    def of_package(cls, package_dir: Path = PACKAGE_DIR) -> ImportGraph:
        """The graph of the package at ``package_dir``; raises (never an empty graph) when it
        is no package, a module cannot be read or parsed, or no import joins two modules."""
        if not (package_dir / "__init__.py").is_file():
            raise FileNotFoundError(f"{package_dir} is not a package: it has no __init__.py.")
        graph = cls(
            {
                path.relative_to(package_dir).as_posix(): path.read_text(encoding="utf-8")
                for path in sorted(package_dir.rglob("*.py"))
            }
        )
        graph.require_edges()
        return graph

    def require_edges(self) -> None:
        """Raises ValueError unless some module imports another module of the graph: a graph
        without such edges (a wrong package, or imports that resolve to nothing) would let
        every check pass."""
        if not any(True for path in self.sources for _ in self.edges(path)):
            raise ValueError(
                f"the import graph of {sorted(self.sources)[:5]} has no edge between two "
                f"{PACKAGE} modules: the package or its imports were not read."
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

    def framework_privates(
        self, home: tuple[str, ...], framework_names: Iterable[str]
    ) -> list[tuple[str, str, int]]:
        """``(module, expression, line)`` of every read or write of a private name of
        Lightning or solo-learn outside ``home`` (see :func:`private_reads`)."""
        own = set().union(*map(_own_names, self.trees.values()))
        return [
            (path, expression, line)
            for path, tree in self.trees.items()
            if not _within(path, home)
            for expression, line in private_reads(tree, set(framework_names), own)
        ]

    def method_names(
        self, names: tuple[str, ...], homes: tuple[str, ...]
    ) -> list[tuple[str, str, int]]:
        """``(module, name, line)`` of every string constant that is exactly a method's name,
        outside ``homes``; docstrings, CLI help text (:data:`HELP_KEYWORDS`) and the parts of
        f-strings left out."""
        found = []
        for path, tree in self.trees.items():
            if _within(path, homes):
                continue
            skipped: set[int] = set()
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    if body and isinstance(body[0], ast.Expr):
                        skipped.add(id(body[0].value))
                elif isinstance(node, ast.keyword) and node.arg in HELP_KEYWORDS:
                    skipped.update(id(n) for n in ast.walk(node.value))
                elif isinstance(node, ast.JoinedStr):
                    skipped.update(id(n) for n in node.values)
            found += [
                (path, node.value, node.lineno)
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in names
                and id(node) not in skipped
            ]
        return found


def _within(path: str, entries: tuple[str, ...]) -> bool:
    return any(path == e or (e.endswith("/") and path.startswith(e)) for e in entries)


def _is_private(name: str) -> bool:
    """``_name`` but not ``__name__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.AST) -> set[str]:
    """The names a module defines itself: functions, classes, assigned names, attributes
    assigned on ``self``/``cls``, arguments, keyword arguments and import aliases (an attribute
    assigned on another object is not the module's own: it writes someone else's)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return names


FRAMEWORK_SOURCES = {"lightning": ("pytorch", "fabric"), "solo": ("",)}
"""The framework packages whose private names :func:`framework_private_names` reads: (the
folders of) solo-learn and Lightning's trainer and fabric (not its app, data or store)."""


def framework_private_names() -> frozenset[str]:
    """The private names the installed frameworks define (read from their sources, not
    imported): what an attribute of an object of theirs may be called."""
    names: set[str] = set()
    for package, folders in FRAMEWORK_SOURCES.items():
        spec = importlib.util.find_spec(package)  # finds, without importing, a top package
        for root in (spec.submodule_search_locations or []) if spec else []:
            for path in (p for f in folders for p in (Path(root) / f).rglob("*.py")):
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
                names |= {name for name in _all_defined(tree) if _is_private(name)}
    return frozenset(names)


def _all_defined(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr


def private_reads(tree: ast.AST, framework_names: set[str], own: set[str]) -> list[tuple[str, int]]:
    """``(expression, line)`` of a module's touches of a framework's private name:

    * an import of a private name, or from a private module, of Lightning or solo-learn;
    * ``x._name`` where ``x`` is (an attribute of) a module or name imported from them;
    * ``self._name`` (or ``cls.``, ``super().``) in a class that derives from one of their
      classes, where the class (or its bases in the module) does not define ``_name``;
    * ``anything._name`` where ``_name`` is one of ``framework_names`` and not one of ``own``
      (the package's own names): their objects reach us untyped (``trainer: Any``).
    """
    imported: set[str] = set()
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FRAMEWORKS:
                    imported.add(alias.asname or alias.name.split(".")[0])
                    if any(_is_private(part) for part in alias.name.split(".")):
                        found.append((f"import {alias.name}", node.lineno))
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if module.split(".")[0] in FRAMEWORKS:
                for alias in node.names:
                    imported.add(alias.asname or alias.name)
                    if _is_private(alias.name) or any(map(_is_private, module.split("."))):
                        found.append((f"from {module} import {alias.name}", node.lineno))

    def root(node: ast.AST) -> ast.AST:
        while isinstance(node, ast.Attribute):
            node = node.value
        return node

    classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}

    def framework_class(cls: ast.ClassDef, seen: frozenset[str] = frozenset()) -> bool:
        for base in cls.bases:
            name = root(base)
            if isinstance(name, ast.Name):
                if name.id in imported:
                    return True
                parent = classes.get(name.id)
                if parent is not None and name.id not in seen:
                    if framework_class(parent, seen | {cls.name}):
                        return True
        return False

    def class_names(cls: ast.ClassDef) -> set[str]:
        names = _own_names(cls)
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in classes and base.id != cls.name:
                names |= class_names(classes[base.id])
        return names

    def visit(node: ast.AST, in_class: Optional[set[str]]) -> None:
        for child in ast.iter_child_nodes(node):
            scope = in_class
            if isinstance(child, ast.ClassDef):
                scope = class_names(child) if framework_class(child) else None
            if isinstance(child, ast.Attribute) and _is_private(child.attr):
                base = child.value
                direct = isinstance(root(base), ast.Name) and root(base).id in imported
                selfish = (isinstance(base, ast.Name) and base.id in ("self", "cls")) or (
                    isinstance(base, ast.Call) and ast.unparse(base.func) == "super"
                )
                if (
                    direct
                    or (selfish and in_class is not None and child.attr not in in_class)
                    or (not selfish and child.attr in framework_names and child.attr not in own)
                ):
                    found.append((ast.unparse(child), child.lineno))
            visit(child, scope)

    visit(tree, None)
    return found


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return ImportGraph.of_package()


def test_the_graph_is_the_package(graph):
    """The graph read is the package's: its modules, and imports between them (of_package
    raises on an empty graph; this pins a few edges every version of the package has)."""
    assert {"__init__.py", "cli.py", "methods/__init__.py", "methods/clamp.py"} <= set(
        graph.sources
    )
    assert ("methods/facts.py", "methods/clamp.py") in {
        (target, path) for path in graph.sources for target, _ in graph.edges(path)
    }
    lazy = [i for i in graph.imports["__init__.py"] if i.module == "losses/clamp.py"]
    assert lazy and all(i.in_function for i in lazy)  # importlib.import_module("solo_clamp....")


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


@pytest.fixture(scope="module")
def framework_names() -> frozenset[str]:
    missing = [p for p in ("lightning", "solo") if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"{missing} not installed: their private names cannot be read")
    names = framework_private_names()
    assert {"_signal_connector", "_data_fetcher", "_BACKBONES", "_OPTIMIZERS"} <= names
    return names


def test_only_internals_touches_the_frameworks_private_names(graph, framework_names):
    found = graph.framework_privates(PRIVATE_HOME, framework_names)
    assert [f for f in found if f[:2] not in PRIVATE_ALLOWED] == []
    assert {f[:2] for f in found} == set(PRIVATE_ALLOWED), "a listed violation is gone: unlist it"


def test_the_private_name_rule_sees_what_internals_does(graph, framework_names):
    """internals.py, checked as any other module, is what the rule finds there."""
    found = {(path, expr) for path, expr, _ in graph.framework_privates((), framework_names)}
    assert {
        ("internals.py", "trainer._signal_connector"),
        ("internals.py", "trainer.fit_loop._data_fetcher"),
        ("internals.py", "BaseMethod._BACKBONES"),
    } <= found


def test_method_names_are_spelled_in_methods_and_losses_only(graph):
    found = graph.method_names(METHOD_NAMES, NAME_HOMES)
    assert [f for f in found if f[:2] not in METHOD_NAMES_ALLOWED] == []
    assert {f[:2] for f in found} == set(METHOD_NAMES_ALLOWED), "a listed one is gone: unlist it"


def test_method_names_are_the_registered_ones(graph):
    """:data:`METHOD_NAMES` are the ``name=`` of every ``MethodFacts(...)`` in ``methods/``."""
    declared = {
        keyword.value.value
        for path, tree in graph.trees.items()
        if path.startswith("methods/")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "MethodFacts"
        for keyword in node.keywords
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)
    }
    assert declared == set(METHOD_NAMES)


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


def test_an_import_module_call_with_a_literal_is_an_import():
    sources = {
        "losses/a.py": "import importlib\n"
        "def f():\n    return importlib.import_module('solo_clamp.training.run')\n",
        "training/run.py": "",
    }
    graph = ImportGraph(sources)
    assert "losses/a.py (layer 1) imports training/run.py (layer 4), line 3" in (
        graph.upward_imports(FAKE_LAYERS)
    )
    assert graph.function_imports(()) == {("losses/a.py", "training/run.py")}
    name = {"losses/a.py": "import importlib\ndef f(x):\n    return importlib.import_module(x)\n"}
    assert ImportGraph(name).imports["losses/a.py"][0].module == "importlib"  # not followable


def test_an_empty_or_unread_graph_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="no __init__.py"):
        ImportGraph.of_package(tmp_path / "not_the_package")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("import os\n")
    with pytest.raises(ValueError, match="has no edge"):
        ImportGraph.of_package(tmp_path)  # modules, but none imports another
    wrong = ImportGraph({"__init__.py": "", "a.py": "from other_package import b\n", "b.py": ""})
    with pytest.raises(ValueError, match="has no edge"):
        wrong.require_edges()  # imports that resolve to no module of the graph
    (tmp_path / "b.py").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(UnicodeDecodeError):
        ImportGraph.of_package(tmp_path)


@pytest.mark.parametrize(
    "source, expected",
    [
        (  # a private name of a framework's class
            "from solo.methods.base import BaseMethod\nX = BaseMethod._BACKBONES\n",
            "BaseMethod._BACKBONES",
        ),
        (  # ... of its module, through an alias
            "import lightning.pytorch as pl\ndef f():\n    return pl.trainer._helper\n",
            "pl.trainer._helper",
        ),
        (  # an inherited private name, on self
            "from solo.methods.linear import LinearModel\n"
            "class M(LinearModel):\n    def f(self):\n        return self._OPTIMIZERS\n",
            "self._OPTIMIZERS",
        ),
        (  # ... through a class of the module, on super()
            "from lightning.pytorch import Callback\nclass A(Callback):\n    pass\n"
            "class B(A):\n    def f(self):\n        return super()._hook()\n",
            "super()._hook",
        ),
        (  # a framework's private name on an object of unknown type
            "def f(trainer):\n    trainer._signal_connector.received_sigterm = True\n",
            "trainer._signal_connector",
        ),
        (  # a private name imported from a framework
            "from lightning.fabric.utilities.types import _PATH\n",
            "from lightning.fabric.utilities.types import _PATH",
        ),
        (  # ... or a private module of one
            "import solo._private.tables\n",
            "import solo._private.tables",
        ),
    ],
)
def test_the_private_name_rule_finds_a_violation(source, expected):
    fake = ImportGraph({"training/a.py": source, "internals.py": source})
    names = {"_signal_connector", "_BACKBONES", "_OPTIMIZERS"}
    found = fake.framework_privates(("internals.py",), names)
    assert expected in [expr for path, expr, _ in found]
    assert {path for path, _, _ in found} == {"training/a.py"}  # the home is exempt


def test_the_private_name_rule_leaves_our_own_private_names_alone():
    source = (
        "from solo.methods.base import BaseMethod\n"
        "class M(BaseMethod):\n"
        "    def __init__(self):\n        self._mine = 1\n"
        "    def _helper(self):\n        return self._mine + self.__class__.__name__\n"
        "def g(model, args):\n    return model._helper(), args._run, model.__dict__\n"
        "def h(parser):\n    parser.set_defaults(_run=None)\n"
    )
    assert ImportGraph({"a.py": source}).framework_privates((), {"_helper", "_run"}) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("METHOD = 'clamp'\n", ("training/a.py", "clamp", 1)),
        ("def f(m):\n    return m == 'vicreg'\n", ("training/a.py", "vicreg", 2)),
        ("TABLE = {'byol': 1}\n", ("training/a.py", "byol", 1)),
    ],
)
def test_the_method_name_rule_finds_a_violation(source, expected):
    fake = ImportGraph({"training/a.py": source, "methods/a.py": source, "losses/a.py": source})
    assert fake.method_names(METHOD_NAMES, NAME_HOMES) == [expected]


def test_the_method_name_rule_leaves_docstrings_help_text_and_phrases_alone():
    source = (
        '"""clamp"""\n'
        "def f(parser, name):\n"
        '    """simclr"""\n'
        "    parser.add_argument('--method', help='clamp')\n"
        "    return f'clamp-{name}', 'clamp runs', 'CLAMP', 'train_clamp_loss'\n"
    )
    assert ImportGraph({"cli.py": source}).method_names(METHOD_NAMES, NAME_HOMES) == []


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
