"""The layering rule: dependencies point one way (cli -> server -> runtime -> engines -> perf -> core), and the core stays pure."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "aps"
# what each layer may import from the project (itself always allowed)
ALLOWED = {
    "core": set(),
    "perf": set(),
    "sim": {"core", "perf"},
    "engines": {"core", "perf"},
    "runtime": {"core", "perf", "engines", "store"},
    "store": {"core"},
    "server": {"core", "perf", "engines", "runtime", "store"},
    "cli": {"core", "perf", "sim", "engines", "runtime", "store", "server"},
}
IMPURE = {"asyncio", "time", "socket", "sqlite3", "random", "os", "io", "threading",
          "subprocess", "datetime", "httpx", "fastapi", "uvicorn", "redis", "requests", "numpy"}


def imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def layer_files():
    for layer in ALLOWED:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path


@pytest.mark.parametrize("layer, path", list(layer_files()), ids=lambda x: str(x)[-40:])
def test_layer_imports_only_lower_layers(layer, path):
    for name in imports(path):
        parts = name.split(".")
        if parts[0] == "aps" and len(parts) > 1:
            assert parts[1] == layer or parts[1] in ALLOWED[layer], (
                f"{path.relative_to(ROOT.parent)} ({layer}) imports {name}")


def test_core_has_no_io_clock_or_global_randomness():
    for path in sorted((ROOT / "core").rglob("*.py")):
        for name in imports(path):
            assert name.split(".")[0] not in IMPURE, f"{path.name} imports {name}"
