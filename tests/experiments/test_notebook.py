"""The research notebook runs top to bottom in a kernel on this project's Python."""
import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "research_demo.ipynb"
TIMEOUT_S = 300  # per cell; the experiment cell is the slow one

def execute(nb: nbformat.NotebookNode, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    """Run every cell; a cell that raises fails the test with its traceback."""
    # A kernelspec named python3 that starts this interpreter: JUPYTER_PATH is searched before
    # user and system folders, so a python3 kernel from another install cannot be picked up.
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (project)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    return [out["data"][mime] for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if mime in out.get("data", {})]


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any('run_experiment("static-vs-aps", quick=True)' in c.source for c in code)


def test_notebook_runs_the_quick_experiment_and_shows_its_tables_and_figures(tmp_path, monkeypatch):
    nb = execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path, monkeypatch)
    images, markdown = outputs(nb, "image/png"), "\n".join(outputs(nb, "text/markdown"))
    assert len(images) >= 4, "the notebook showed too few figures"
    assert "### Seeds' stress test" in markdown and "bid-1 max wait s" in markdown
