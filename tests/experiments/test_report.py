"""The experiment report: every file written, PNGs valid, HTML self-contained, data round-trips."""
import csv
import json
import math
import re

import numpy as np
import pytest

from aps.experiments.plots import render_figure
from aps.experiments.report import format_cell, inline_html, markdown_to_html, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_results() -> dict:
    """A small results dict with every figure kind, NaNs, empty series and two tables."""
    rng = np.random.default_rng(1)
    tenants = [f"tenant-{i}" for i in range(14)]  # more than the legend shows
    cdf_panels = [{"title": policy, "series": [
        {"label": t, "x": list(rng.lognormal(i / 5, 1.0, 60)) + [math.nan]}
        for i, t in enumerate(tenants)]} for policy in ("fifo", "priority", "aps", "vtc")]
    loads = [0.5, 0.8, 1.0, 1.2]
    return {
        "experiment": "synthetic", "title": "Synthetic <check> & report",
        "description": "Compares **three** policies.\n\n- uses `fifo`\n- uses *aps*\n\n"
                       "Second paragraph with <b>raw</b> markup.",
        "command": "aps experiment synthetic --quick", "quick": True,
        "tables": [
            {"title": "Latency", "columns": ["policy", "TTFT p99 s", "requests", "ok"],
             "rows": [["fifo", 12.3456, 123456, True], ["aps | aged", math.nan, 7, False],
                      ["vtc", 0.000123, 1000, None]],
             "note": "Lower is **better**."},
            {"title": "Throughput", "columns": ["policy", "tokens/s"],
             "rows": [["fifo", np.float64(884.2)], ["vtc", 869.0]]},
        ],
        "figures": [
            {"name": "ttft_cdf", "title": "TTFT per tenant", "kind": "cdf",
             "xlabel": "time to first token (s)", "ylabel": "fraction of requests",
             "logx": True, "panels": cdf_panels},
            {"name": "load-line", "title": "p99 TTFT against load", "kind": "line",
             "xlabel": "load (fraction of capacity)", "ylabel": "TTFT p99 (s)", "logy": True,
             "panels": [{"title": p, "series": [
                 {"label": "fifo", "x": loads, "y": [0.2, 1.0, math.nan, 30.0]},
                 {"label": "aps", "x": loads, "y": [0.2, 0.9, 4.0, 20.0]},
                 {"label": "empty", "x": [], "y": []}]} for p in ("a100", "h100")]},
            {"name": "queue", "title": "Queue depth over time", "kind": "step",
             "xlabel": "simulated time (s)", "ylabel": "requests waiting",
             "panels": [{"title": "aps", "series": [
                 {"label": "waiting", "x": [0, 10, 20, 30, 40], "y": [0, 50, 80, None, 5]}]},
                 {"title": "nothing", "series": []}]},
            {"name": "share_bar", "title": "Service share per tenant", "kind": "bar",
             "xlabel": "tenant", "ylabel": "tokens served (millions)",
             "panels": [{"title": "all", "series": [
                 {"label": "fifo", "x": ["gold", "silver", "bronze"], "y": [3.0, 2.0, 1.0]},
                 {"label": "vtc", "x": ["gold", "silver", "bronze"], "y": [2.0, math.nan, 2.0]}]}]},
        ],
        "runs": [{"id": "r0", "summary": {"ttft_s": {"p99": math.inf}}}, {"id": "r1"}],
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(synthetic_results(), out)


def test_every_file_is_written(report):
    out, written = report
    expected = {"results.json", "results.csv", "report.md", "report.html", "ttft_cdf.png",
                "load-line.png", "queue.png", "share_bar.png"}
    assert set(written) == expected
    for name, path in written.items():
        assert path == out / name and path.is_file() and path.stat().st_size > 0


def test_pngs_are_valid_images(report):
    out, _ = report
    for name in ("ttft_cdf", "load-line", "queue", "share_bar"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 10_000  # axes, labels and lines, not a blank canvas
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 400 and height > 300
    # four panels wrap into two rows of three: taller than a one-row figure
    cdf = (out / "ttft_cdf.png").read_bytes()
    bar = (out / "share_bar.png").read_bytes()
    assert int.from_bytes(cdf[20:24], "big") > int.from_bytes(bar[20:24], "big")


def test_html_is_self_contained_and_escaped(report):
    out, _ = report
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,")
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    assert "Synthetic &lt;check&gt; &amp; report" in page
    assert "&lt;b&gt;raw&lt;/b&gt;" in page and "<b>raw</b>" not in page
    assert "<strong>three</strong>" in page and "<code>fifo</code>" in page
    assert "<li>uses <em>aps</em></li>" in page
    assert "<th>TTFT p99 s</th>" in page and ">123,456</td>" in page
    assert "<code>aps experiment synthetic --quick</code>" in page


def test_markdown_has_tables_and_figures(report):
    out, _ = report
    md = (out / "report.md").read_text()
    assert md.startswith("# Synthetic <check> & report\n")
    assert "| policy | TTFT p99 s | requests | ok |" in md
    assert "|---|---:|---:|---|" in md  # numbers right-aligned, text and flags left
    assert "| fifo | 12.3 | 123,456 | yes |" in md
    assert "| aps \\| aged | – | 7 | no |" in md
    assert "| vtc | 0.000123 | 1,000 | – |" in md
    assert "| fifo | 884 |" in md
    for name, title in (("ttft_cdf", "TTFT per tenant"), ("load-line", "p99 TTFT against load"),
                        ("queue", "Queue depth over time"), ("share_bar", "Service share per tenant")):
        assert f"![{title}]({name}.png)" in md
    assert "`aps experiment synthetic --quick`" in md and "Lower is **better**." in md


def test_json_round_trips_with_nan_as_null(report):
    out, _ = report
    data = json.loads((out / "results.json").read_text())
    src = synthetic_results()
    assert data["title"] == src["title"] and data["command"] == src["command"]
    assert data["tables"][0]["rows"][1] == ["aps | aged", None, 7, False]
    assert data["tables"][1]["rows"][0] == ["fifo", 884.2]
    assert data["runs"][0]["summary"]["ttft_s"]["p99"] is None
    assert [f["name"] for f in data["figures"]] == [f["name"] for f in src["figures"]]
    assert data["figures"][0]["panels"][0]["series"][0]["x"][:3] == \
        src["figures"][0]["panels"][0]["series"][0]["x"][:3]


def test_csv_holds_every_row_of_every_table(report):
    out, _ = report
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["table", "policy", "TTFT p99 s", "requests", "ok", "tokens/s"]
    assert [r["table"] for r in rows] == ["Latency"] * 3 + ["Throughput"] * 2
    assert float(rows[0]["TTFT p99 s"]) == 12.3456 and rows[0]["tokens/s"] == ""
    assert rows[1]["TTFT p99 s"] == "" and rows[1]["policy"] == "aps | aged"
    assert float(rows[4]["tokens/s"]) == 869.0


def test_bad_figure_names_are_refused(tmp_path):
    results = synthetic_results()
    results["figures"][1]["name"] = "../escape"
    with pytest.raises(ValueError, match="escape"):
        write_report(results, tmp_path)
    results["figures"][1]["name"] = "ttft_cdf"
    with pytest.raises(ValueError, match="unique"):
        write_report(results, tmp_path / "dup")


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pie"):
        render_figure({"name": "x", "kind": "pie", "panels": []}, tmp_path / "x.png")


def test_figure_without_any_data_still_renders(tmp_path):
    fig = {"name": "blank", "kind": "cdf", "panels": [{"title": "a", "series": [
        {"label": "only-nan", "x": [math.nan, None]}]}]}
    path = render_figure(fig, tmp_path / "sub" / "blank.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("value, text", [
    (12.3456, "12.3"), (0.5, "0.5"), (1234.5, "1,234"), (999.7, "1,000"), (1234567, "1,234,567"),
    (42, "42"), (math.nan, "–"), (None, "–"), (math.inf, "∞"), (True, "yes"), ("a", "a")])
def test_cells_are_formatted_for_reading(value, text):
    assert format_cell(value) == text


def test_markdown_conversion():
    assert inline_html("a `x<y` and **b** <i>") == \
        "a <code>x&lt;y</code> and <strong>b</strong> &lt;i&gt;"
    assert inline_html("see [docs](https://example.org/a?b=1&c=2)") == \
        'see <a href="https://example.org/a?b=1&amp;c=2">docs</a>'
    assert markdown_to_html("one\ntwo\n\n1. first\n2. second\n\n## Head") == \
        "<p>one two</p>\n<ol>\n<li>first</li>\n<li>second</li>\n</ol>\n<h4>Head</h4>"
