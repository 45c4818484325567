"""`aps bench fidelity`: every row runs and is well formed (a source, a published figure, a
computed one, a finite error). The errors themselves are figures the command prints, not
properties: they are not asserted here."""
import json
import math

import pytest
from typer.testing import CliRunner

from aps.bench import fidelity
from aps.cli import app


@pytest.fixture(scope="module")
def rows():
    return fidelity.run()


def test_every_row_runs_and_is_well_formed(rows):
    assert len(rows) == len(fidelity.ROWS) >= 6
    assert len({r["key"] for r in rows}) == len(rows)
    for r in rows:
        assert r["source"].strip() and r["engine"].strip() and r["metric"] and r["unit"], r["key"]
        assert math.isfinite(r["measured"]) and r["measured"] > 0, r["key"]
        assert math.isfinite(r["simulated"]) and r["simulated"] > 0, r["key"]
        assert math.isfinite(r["error_pct"]), r["key"]
        assert r["error_pct"] == pytest.approx((r["simulated"] / r["measured"] - 1) * 100)


def test_the_rows_cover_both_gpus_and_every_shape(rows):
    assert {r["gpu"] for r in rows} >= {"a100-80gb", "h100-sxm"}
    shapes = " | ".join(r["shape"] for r in rows)
    for kind in ("concurrency 1", "decode, batch", "prefill-heavy", "decode-heavy", "curve"):
        assert kind in shapes, kind
    curve = [r for r in rows if r["shape"].startswith("curve")]
    assert len({r["config"] for r in curve if r["gpu"] == "a100-80gb"}) >= 3


def test_the_simulated_figures_are_computed_not_stored():
    """The same row priced on another GPU gives another figure: the column comes from the model."""
    row = next(r for r in fidelity.ROWS if r.key == "trtllm-a100-ttft-7b")
    faster = fidelity.Row(**{**{f: getattr(row, f) for f in row.__slots__}, "gpu": "h100-sxm"})
    assert fidelity.simulated(faster) < fidelity.simulated(row)


def test_the_command_prints_json_and_a_table(rows, monkeypatch):
    monkeypatch.setattr(fidelity, "run", lambda: rows)
    out = CliRunner().invoke(app, ["bench", "fidelity", "--json"])
    assert out.exit_code == 0, out.output
    assert [r["key"] for r in json.loads(out.output)["rows"]] == [r["key"] for r in rows]
    out = CliRunner().invoke(app, ["bench", "fidelity"])
    assert out.exit_code == 0, out.output
    assert "rows within 15%" in out.output and "Sources:" in out.output
