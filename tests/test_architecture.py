"""The architecture, checked: which package may import which, no import cycles between modules
(imports inside functions and under TYPE_CHECKING count), a pure core, and small rooms."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "aps"
# What each package may import from the project (itself always). Dependencies point one way:
# cli -> server -> runtime -> engines -> perf -> core; experiments -> sim -> workload -> core;
# sim -> perf; bench measures everything below cli; store serves server.
ALLOWED = {
    "core": set(),
    "perf": {"core"},
    "workload": {"core"},
    "sim": {"core", "perf", "workload"},
    "experiments": {"core", "perf", "workload", "sim"},
    "engines": {"core", "perf"},
    "runtime": {"core", "perf", "engines"},
    "store": {"core"},
    "server": {"core", "perf", "engines", "runtime", "store"},
    "bench": {"core", "perf", "workload", "sim", "experiments", "engines", "runtime", "store",
              "server"},
    "cli": {"core", "perf", "workload", "sim", "experiments", "engines", "runtime", "store",
            "server", "bench"},
}
IMPURE = {"asyncio", "time", "socket", "sqlite3", "random", "os", "io", "threading",
          "subprocess", "datetime", "httpx", "fastapi", "uvicorn", "redis", "requests", "numpy"}
MAX_LINES, MAX_MODULES = 400, 12


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(path: Path):
    """Every module name an import statement in `path` names, wherever the statement is."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:  # `from package import module` names the module
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in MODULES else node.module


def project_edges(name: str) -> set[str]:
    """The project modules `name` imports (a name that is not a module: its package)."""
    out = set()
    for target in imported(MODULES[name]):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target.startswith("aps.") and target != name:
            out.add(target)
    return out


GRAPH = {name: project_edges(name) for name in MODULES}


def package_of(module: str) -> str | None:
    """The package under aps/ a module is in (None: `aps` itself and `aps.__main__`, the
    entry point, which may import anything)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (ROOT / parts[1]).is_dir() else None


def test_every_module_belongs_to_a_known_package():
    assert {package_of(m) for m in MODULES} - {None} == set(ALLOWED)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_package_imports_only_what_it_may(name):
    mine = package_of(name)
    if mine is None:
        return
    for target in GRAPH[name]:
        theirs = package_of(target)
        assert theirs == mine or theirs in ALLOWED.get(mine, set()), \
            f"{name} ({mine}) imports {target} ({theirs})"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_modules():
    assert cycles(GRAPH) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_has_no_io_clock_or_global_randomness():
    for name, path in MODULES.items():
        if package_of(name) == "core":
            for target in imported(path):
                assert target.split(".")[0] not in IMPURE, f"{name} imports {target}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES})"


def test_folders_hold_at_most_a_dozen_modules_and_say_what_they_are_for():
    for folder in sorted({p.parent for p in MODULES.values()}):
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_MODULES, f"{folder.relative_to(ROOT.parent)}: {len(modules)}"
        if folder != ROOT:
            init = folder / "__init__.py"
            assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), \
                f"{folder.relative_to(ROOT.parent)} has no package docstring"
