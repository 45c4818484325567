"""Run a notebook top to bottom in a kernel on this interpreter and save it with its outputs.

    python scripts/run_notebook.py notebooks/research_demo.ipynb     # `make notebook`

The kernel is this interpreter (a kernelspec in a temporary JUPYTER_PATH, searched before user
and system folders), so the notebook runs against this checkout's `aps`, not another install.
Cells run in a temporary folder, so what they write is not left in the repository.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TIMEOUT_S = 300  # per cell; the experiment cell is the slow one


def execute(nb: nbformat.NotebookNode, workdir: Path) -> nbformat.NotebookNode:
    """Run every cell of `nb` in place; a cell that raises raises here with its traceback."""
    spec_dir = workdir / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(workdir / "jupyter")
    try:
        NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
    return nb


def main(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="aps-notebook-") as tmp:
        execute(nb, Path(tmp))
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"{path}: executed and saved with its outputs")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "notebooks/research_demo.ipynb")
