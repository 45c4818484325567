"""The research notebook is stored executed (it reads on GitHub without running), and running it
again on this checkout gives the outputs it was stored with (`make notebook` refreshes them)."""
import copy
import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "research_demo.ipynb"


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "scripts" / "run_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    return [out["data"][mime] for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if mime in out.get("data", {})]


def test_notebook_is_stored_with_its_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert all(c.outputs for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any('run_experiment("static-vs-aps", quick=True)' in c.source for c in code)
    markdown = "\n".join(outputs(nb, "text/markdown"))
    assert len(outputs(nb, "image/png")) >= 3, "the notebook shows too few figures"
    assert "### Seeds' stress test" in markdown and "bid-1 longest wait s" in markdown
    assert "What the runs say" in markdown


def test_running_the_notebook_again_gives_the_stored_outputs(tmp_path):
    stored = nbformat.read(NOTEBOOK, as_version=4)
    fresh = _runner().execute(copy.deepcopy(stored), tmp_path)
    assert outputs(fresh, "text/markdown") == outputs(stored, "text/markdown"), \
        "the stored notebook is out of date: run `make notebook`"
    assert len(outputs(fresh, "image/png")) == len(outputs(stored, "image/png"))
