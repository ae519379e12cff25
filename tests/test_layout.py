"""The package layout's rules, read from the source: no import circle, the library never imports the
pipeline or the test stand-ins, and no pipeline stage imports another."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("action100m", "data_build")
STAGES = {"data_build.segment", "data_build.caption", "data_build.refine"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every name an import statement in the file reaches — at module level, in functions and under
    TYPE_CHECKING alike, since an import moved into a function hides a circle rather than ending it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (a `from package import name` counts as importing the
    submodule `name` when there is one, else the package)."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            step = next(targets, None)
            if step is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif step not in index:
                index[step] = low[step] = len(index)
                stack.append(step)
                on_stack.add(step)
                work.append((step, iter(sorted(graph[step]))))
            elif step in on_stack:
                low[node] = min(low[node], index[step])
    return found


def defined_names(path: Path) -> set[str] | None:
    """The names a module binds at its top level; None when a module `__getattr__` may supply any name."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == "__getattr__":
                return None
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def test_every_project_import_names_what_exists():
    """Moves leave no import (lazy ones in functions included) of a module or name that is gone."""
    modules = module_files()
    missing = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.ImportFrom)
                and not node.level
                and (node.module or "").startswith(PACKAGES)
            ):
                if node.module not in modules:
                    missing.append(f"{module}: no module {node.module}")
                    continue
                names = defined_names(modules[node.module])
                for alias in node.names:
                    if (
                        f"{node.module}.{alias.name}" not in modules
                        and names is not None
                        and alias.name not in names
                    ):
                        missing.append(f"{module}: {node.module} has no {alias.name}")
            elif isinstance(node, ast.Import):
                missing += [
                    f"{module}: no module {a.name}"
                    for a in node.names
                    if a.name.startswith(PACKAGES) and a.name not in modules
                ]
    assert missing == []


def test_circles_are_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_library_imports_neither_the_pipeline_nor_the_test_stand_ins():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("action100m.") and not module.startswith("action100m.testing"):
            wrong = {t for t in targets if t.startswith(("data_build", "action100m.testing"))}
            assert not wrong, f"{module} imports {sorted(wrong)}"


def test_no_stage_imports_another():
    graph = import_graph()
    for stage in STAGES:
        assert not graph[stage] & (STAGES - {stage}), f"{stage} imports {sorted(graph[stage] & STAGES)}"
