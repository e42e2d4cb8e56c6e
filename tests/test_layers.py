"""The layer rule over mlp_lab's import graph (docs/development.md): the packages are layered, a
module imports only from its own package or from a package of a lower layer, and no set of modules
imports itself round a circle.

Every import counts, function-local ones and those under ``if TYPE_CHECKING:`` included: a deferred
import still ties the two modules' jobs together, and the circle this test was written against
(loggers -> tracking -> ablation -> execute -> train -> loggers) was made of function-local imports.
The graph is read from the source with ``ast``, so nothing is imported and no extra is needed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlp_lab"

DEVELOPMENT = PACKAGE.parent / "docs" / "development.md"


def layers_in(markdown: str) -> dict[str, int]:
    """The package map's layers: each row of the table whose first cell names a package (or a
    top-level module) in backticks and whose last cell is the layer."""
    layers: dict[str, int] = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and cells[-1].isdigit():
            for name in re.findall(r"`([\w.]+)`", cells[0]):
                layers[name] = int(cells[-1])
    return layers


# The layers of docs/development.md's package map: the map is the rule, this test holds the code to it.
LAYERS = layers_in(DEVELOPMENT.read_text())


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def package_of(module: str) -> str:
    """The package a module belongs to: its first name (``training.engines.hand`` is in
    ``training``); a top-level module (``api``) is its own."""
    return module.split(".")[0]


def layer_of(module: str) -> int:
    """A module's layer: its package's (``cli.runs`` is in ``cli``'s layer)."""
    return LAYERS[package_of(module)]


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_in(source: str, module: str, is_package: bool = False, known: set[str] | None = None) -> set[str]:
    """The mlp_lab modules a module's source imports anywhere (function-local and TYPE_CHECKING
    imports included). ``from mlp_lab.search import driver`` counts as ``search.driver``, not as
    the package: the edge to the package's ``__init__`` is Python's, not the importer's choice."""
    known = set(MODULES) if known is None else known
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):  # import a.b.c: the deepest of a.b.c, a.b, a that is ours
            targets = [
                [".".join(alias.name.split(".")[:n]) for n in range(alias.name.count(".") + 1, 0, -1)]
                for alias in node.names
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(["mlp_lab", *base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            targets = [[f"{prefix}.{alias.name}", prefix] for alias in node.names]
        else:
            continue
        for candidates in targets:  # the most specific name that is one of our modules
            for target in candidates:
                name = target.removeprefix("mlp_lab").removeprefix(".") if target.startswith("mlp_lab") else None
                if target == "mlp_lab" or (name is not None and target.startswith("mlp_lab.")):
                    name = name or "__init__"
                    if name in known:
                        found.add(name)
                        break
    found.discard(module)
    return found


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


GRAPH = {module: imports_of(module) for module in MODULES}

# The package's front door may point at the top layer, and only it, only so: `mlp_lab.run(...)`
# and the other names of the Python API must be reachable from `import mlp_lab`, whose
# `__init__` every import of a submodule runs first. It imports `api` inside its module
# `__getattr__` (run when a user asks for a name, never while a submodule loads), and the
# `search` subpackage, whose own `__init__` imports nothing, to make it callable as the API's
# search(). Neither can take part in a circular import; test_the_front_door_points_up_only_lazily
# holds the code to that, so these two edges are left out of the rule and of the cycle search.
FRONT_DOOR = {"api", "search"}
GRAPH["__init__"] = GRAPH["__init__"] - FRONT_DOOR


def test_every_module_has_a_layer() -> None:
    missing = []
    for module in MODULES:
        try:
            layer_of(module)
        except KeyError:
            missing.append(module)
    assert not missing, (
        f"give these packages (or top-level modules) a row in docs/development.md's package map: {missing}"
    )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    mine, home = layer_of(module), package_of(module)
    # Within its own package a module imports freely (the cycle test still holds it); across
    # packages only downwards: two packages of one layer (data, models) know nothing of each other.
    wrong = sorted(
        f"{target} (layer {layer_of(target)})"
        for target in GRAPH[module]
        if package_of(target) != home and layer_of(target) >= mine
    )
    assert not wrong, f"mlp_lab.{module} ({home}, layer {mine}) imports from its layer or above: {', '.join(wrong)}"


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_graph_sees_deferred_and_relative_imports() -> None:
    """The kinds of import that made the old circle are edges too."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mlp_lab.studies.ablation import Arm\n"
        "def f():\n    from mlp_lab.tracking import export\n    from . import train\n    import mlp_lab.search.driver\n"
        "from mlp_lab import config\n"
    )
    known = {"__init__", "ablation", "config", "search", "search.driver", "tracking", "tracking.export", "train"}
    source = source.replace("mlp_lab.studies.ablation", "mlp_lab.ablation")
    assert imports_in(source, "loggers", known=known) == {
        "ablation",
        "tracking.export",
        "train",
        "search.driver",
        "config",
    }
    assert imports_in(source, "loggers", known=known - {"search.driver", "tracking.export"}) == {
        "ablation",
        "tracking",
        "train",
        "search",
        "config",
    }
    assert imports_in("from .. import config\nfrom . import common\n", "cli.runs", known={"config", "cli.common"}) == {
        "config",
        "cli.common",
    }
    assert layer_of("cli.runs") == layer_of("cli")


def test_the_package_map_names_only_packages_that_exist() -> None:
    assert len(LAYERS) > 10, "the package map's table was not found in docs/development.md"
    stale = sorted(name for name in LAYERS if name not in MODULES)
    assert not stale, f"docs/development.md's package map names packages the code does not have: {stale}"


# The architecture shows in the tree: a few front doors at the top, everything else in a package,
# and every module short enough to read whole.
TOP_LEVEL_MOST = 10
LINES_MOST = 500


def test_few_modules_at_the_top() -> None:
    top = sorted(m for m in MODULES if "." not in m and not (PACKAGE / m).is_dir())
    assert len(top) <= TOP_LEVEL_MOST, f"{len(top)} modules at the top of mlp_lab/ (at most {TOP_LEVEL_MOST}): {top}"


def test_no_module_is_longer_than_it_can_be_read() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > LINES_MOST}
    assert not long, f"modules over {LINES_MOST} lines (split them by job): {long}"


def test_the_front_door_points_up_only_lazily() -> None:
    """The exception FRONT_DOOR makes for `__init__` holds: `api` is imported only inside
    functions (its `__getattr__`, the search package's `__call__`), never while the package
    loads; its other imports of ours are layer 0 or `search`, whose own `__init__` imports
    nothing of ours (so loading it from the front door runs no code of a higher layer)."""
    tree = ast.parse(MODULES["__init__"].read_text())
    lazy = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__")
    assert "api" in imports_in(ast.unparse(lazy), "__init__", is_package=True), "__getattr__ no longer imports api"

    def runs_at_load(node: ast.AST) -> list[ast.AST]:  # the statements executed on import, bodies of defs left out
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return []
        if isinstance(node, ast.ClassDef):
            return [s for child in node.body for s in runs_at_load(child)]
        return [node]

    at_load = ast.Module(body=[s for n in tree.body for s in runs_at_load(n)], type_ignores=[])
    loaded = imports_in(ast.unparse(at_load), "__init__", is_package=True)
    assert "api" not in loaded, "mlp_lab/__init__.py imports api while the package loads"
    assert all(m == "search" or layer_of(m) == 0 for m in imports_of("__init__") - {"api"}), imports_of("__init__")
    assert imports_of("search") == set(), "mlp_lab/search/__init__.py must stay import-free: the front door loads it"
