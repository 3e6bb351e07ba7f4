"""The import graph between plugwatch's packages, read from the code's own imports (ast), and its rules.

A *package* is a folder of product code (`worker`, `worker/core`, `plugwatch/enode_api`, ...). An edge
`a -> b` means some module in folder `a` imports a module of folder `b`, wherever the import statement is
(module level, inside a function, under `TYPE_CHECKING`). The rules (README, *Architecture*):

- no cycle between packages;
- the foundation (`plugwatch` and its sub-packages) imports no other package of the project;
- a wing (`receiver`, `worker`, `ops`, `simulator`, with their sub-packages) imports only the foundation
  and its own packages: wings never import each other;
- `worker/core` imports nothing of the project outside itself;
- `cli` (the `plugwatch` command's composition root) may import anything, and nothing imports it.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOUNDATION = "plugwatch"
WINGS = ("receiver", "worker", "ops", "simulator")
COMPOSITION_ROOT = "cli"
PURE_CORE = "worker.core"


def product_packages() -> list[str]:
    """The top-level packages the wheel ships (pyproject), which is what counts as product code."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])


def product_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the product packages."""
    modules: dict[str, Path] = {}
    for top in product_packages():
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def package_of(module: str, modules: Mapping[str, Path]) -> str:
    """The folder (as a dotted name) a module's file lives in."""
    path = modules[module]
    return ".".join(path.relative_to(ROOT).parent.parts)


def imported_modules(tree: ast.AST, modules: Mapping[str, Path]) -> Iterator[str]:
    """The project modules an ast imports (`from pkg import name` counts as pkg.name when that is a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, modules)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield from _known(submodule if submodule in modules else node.module, modules)


def _known(name: str, modules: Mapping[str, Path]) -> Iterator[str]:
    while name and name not in modules:  # `import a.b.c` of a non-module attribute: its longest module prefix
        name = name.rpartition(".")[0]
    if name:
        yield name


def package_graph(modules: Mapping[str, Path] | None = None) -> dict[str, set[str]]:
    """Package -> the other packages it imports."""
    modules = product_modules() if modules is None else modules
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        source = package_of(module, modules)
        targets = graph.setdefault(source, set())
        for imported in imported_modules(ast.parse(path.read_text(), str(path)), modules):
            target = package_of(imported, modules)
            if target != source:
                targets.add(target)
    return graph


def _top(package: str) -> str:
    return package.split(".", 1)[0]


def _within(package: str, ancestor: str) -> bool:
    return package == ancestor or package.startswith(ancestor + ".")


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Every broken rule, one line each (empty: the architecture holds)."""
    found: list[str] = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            found += [f"{source} -> {target}: {why}" for why in _edge_problems(source, target)]
    found += [f"cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def _edge_problems(source: str, target: str) -> Iterator[str]:
    if _top(target) == COMPOSITION_ROOT and _top(source) != COMPOSITION_ROOT:
        yield "nothing imports the cli composition root"
    if _within(source, PURE_CORE) and not _within(target, PURE_CORE):
        yield "worker/core imports nothing of the project outside itself"
    elif _top(source) == FOUNDATION and _top(target) != FOUNDATION:
        yield "the foundation imports no wing"
    elif _top(source) in WINGS and _top(target) not in (FOUNDATION, _top(source)):
        yield "a wing imports only the foundation and itself"
    elif _top(source) not in (FOUNDATION, COMPOSITION_ROOT, *WINGS):
        yield f"{_top(source)} is neither the foundation, a wing nor the composition root"


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One closed path for each strongly connected group of two or more packages (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                groups.append(_closed_path(graph, set(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _closed_path(graph: Mapping[str, Iterable[str]], group: set[str]) -> list[str]:
    """A path through `group` from its first member back to it (for a readable message)."""
    start = min(group)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for target in sorted(graph.get(path[-1], ())):
            if target == start:
                return [*path, start]
            if target in group and target not in path:
                paths.append([*path, target])
    return sorted(group)  # pragma: no cover - a strongly connected group always has a closed path


# --- other rules read from the code: the environment, process-wide state, module names --------------------

def environment_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, how) for every touch of the process environment: `os.environ` anywhere except as a whole
    argument of a call (handing it on, as composition roots do), `os.getenv`/`putenv`/`unsetenv`, and
    `from os import environ/getenv`."""
    handed_on = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call)
                 for arg in [*node.args, *(keyword.value for keyword in node.keywords)]}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in {"getenv", "putenv", "unsetenv", "environb"}:
                found.append((node.lineno, f"os.{node.attr}"))
            elif node.attr == "environ":
                found.append((node.lineno, "os.environ handed on" if id(node) in handed_on else "os.environ read"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {alias.name}") for alias in node.names
                      if alias.name in {"environ", "environb", "getenv", "putenv", "unsetenv"}]
    return found


def process_state(tree: ast.Module) -> set[str]:
    """Module-level names that functions of the module write to: `global` statements, item or slice
    assignment, or a mutating method call (`append`, `update`, ...) on a module-level name."""
    module_names = {target.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                    for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(target, ast.Name)}
    mutators = {"append", "extend", "insert", "pop", "remove", "clear", "update", "add", "discard",
                "setdefault", "popitem", "appendleft"}
    written: set[str] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Global):
                written.update(node.names)
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
            for target in targets:
                if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                    written.add(target.value.id)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.attr in mutators):
                written.add(node.func.value.id)
    return written & module_names


REDIS_CLIENT_MODULE = "plugwatch.redis_clients"
_REDIS_CLASSES = {"Redis", "StrictRedis"}


def redis_client_constructions(tree: ast.AST) -> list[tuple[int, str]]:
    """Where a module builds a Redis client itself: `Redis(…)`, `StrictRedis(…)`, `….from_url(…)` of a Redis
    class or of the `redis` module (line, what)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = _last_name(func)
        if name in _REDIS_CLASSES:
            found.append((node.lineno, f"{name}(…)"))
        elif name == "from_url" and isinstance(func, ast.Attribute):
            owner_name = _last_name(func.value)
            if owner_name in _REDIS_CLASSES | {"redis", "asyncio"}:
                found.append((node.lineno, f"{owner_name}.from_url(…)"))
    return found


def _last_name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
