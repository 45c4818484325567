"""Write an experiment's results as a report: markdown, self-contained HTML, PNGs, JSON, CSV.

`write_report(results, out_dir)` writes into `out_dir`:

- `NAME.png` for every figure (`aps.experiments.plots.render_figure`);
- `results.json`: the whole results dict, NaN and infinities as null;
- `results.csv`: every row of every table in one file, so one load gives everything. The header
  is `table` (the table's title) followed by the union of all tables' columns in order of first
  appearance; a cell is empty where a row's table has no such column. Filter on `table` to get
  one table back;
- `report.md`: title, description, the command that reproduces it, tables, embedded figures;
- `report.html`: the same content with the PNGs inlined as base64 data URIs and inline CSS, so
  the one file can be mailed or archived and opens without network access.

The description and table notes are markdown; the HTML gets a small converter (paragraphs,
headings, lists, `code`, **bold**, *italics*, links) rather than a dependency.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from pathlib import Path
from typing import Callable

from aps.experiments.plots import render_figure

_NAME = re.compile(r"[a-z0-9_-]+")
_LOG_NAME = re.compile(r"[a-z0-9_-]+\.(log|csv)")
_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
code { background: #f3f4f6; padding: .1em .3em; border-radius: 3px; font-size: .92em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; }
th { background: #f3f4f6; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1.2em 0; } img { max-width: 100%; height: auto; }
figcaption, .note { color: #57606a; font-size: .92em; }
"""


def write_report(results: dict, out_dir: Path) -> dict[str, Path]:
    """Write every report file into `out_dir`; returns {file name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = json_safe(results)  # JSON-safe copy: numpy scalars unwrapped, NaN as None
    written: dict[str, Path] = {}
    for fig in data.get("figures", []):
        name = str(fig.get("name", ""))
        if not _NAME.fullmatch(name) or f"{name}.png" in written:
            raise ValueError(f"figure name {name!r} must be unique and match [a-z0-9_-]+")
        written[f"{name}.png"] = render_figure(fig, out_dir / f"{name}.png")
    images = {p.stem: base64.b64encode(p.read_bytes()).decode("ascii") for p in written.values()}
    raw = {k: v for k, v in data.items() if k != "logs"}  # the logs are files of their own
    texts = {"results.json": json.dumps(raw, indent=1, allow_nan=False) + "\n",
             "report.md": render_markdown(data),
             "report.html": render_html(data, images)}
    for fname, text in texts.items():
        (out_dir / fname).write_text(text, encoding="utf-8")
        written[fname] = out_dir / fname
    written["results.csv"] = _write_csv(data.get("tables", []), out_dir / "results.csv")
    for fname, text in (results.get("logs") or {}).items():
        if not _LOG_NAME.fullmatch(fname) or fname in written:
            raise ValueError(f"log name {fname!r} must be unique and match [a-z0-9_-]+.(log|csv)")
        written[fname] = out_dir / fname
        written[fname].write_text(text, encoding="utf-8")
    return written


def json_safe(obj: object) -> object:
    """A JSON-safe deep copy: NaN/inf become None, numpy scalars and arrays become Python."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return json_safe(obj.tolist())  # numpy arrays and scalars alike
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def format_cell(v: object) -> str:
    """A table cell for people: 3 significant digits, thousands separators, '–' for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        # 3 significant digits would turn 12345.6 into 1.23e+04; whole units read better
        return f"{v:,.0f}" if abs(v) >= 999.5 else f"{v:.3g}"
    return str(v)


def _numeric_columns(table: dict) -> list[bool]:
    cols = table.get("columns", [])
    return [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                for r in table.get("rows", []) if i < len(r) and r[i] is not None)
            for i in range(len(cols))]


def markdown_table(table: dict) -> str:
    """A table dict ({columns, rows}) as a GitHub markdown table, numbers right-aligned."""
    def cell(v: object) -> str:
        return format_cell(v).replace("|", "\\|").replace("\n", " ")
    cols = table.get("columns", [])
    lines = ["| " + " | ".join(cell(c) for c in cols) + " |",
             "|" + "|".join("---:" if n else "---" for n in _numeric_columns(table)) + "|"]
    for row in table.get("rows", []):
        padded = list(row) + [None] * (len(cols) - len(row))
        lines.append("| " + " | ".join(cell(v) for v in padded[:len(cols)]) + " |")
    return "\n".join(lines)


def render_markdown(results: dict) -> str:
    """report.md: title, description, how to reproduce, tables, then figures as PNG links."""
    out = [f"# {results.get('title') or results.get('experiment', 'Experiment')}", ""]
    if results.get("description"):
        out += [results["description"].strip(), ""]
    out += [_reproduce_line(results, "`{}`"), ""]
    for table in results.get("tables", []):
        out += [f"## {table.get('title', '')}", "", markdown_table(table), ""]
        if table.get("note"):
            out += [table["note"], ""]
    for fig in results.get("figures", []):
        title = str(fig.get("title") or fig["name"])
        alt = title.replace("[", "(").replace("]", ")")
        out += [f"## {title}", "", f"![{alt}]({fig['name']}.png)", ""]
    return "\n".join(out)


def _reproduce_line(results: dict, code: str, esc: Callable[[str], str] = str) -> str:
    """How to get these numbers again; `code` wraps literals, `esc` escapes them for HTML."""
    def lit(s: object) -> str:
        return code.format(esc(str(s)))
    runs = len(results.get("runs") or [])
    quick = " (quick mode: a smaller grid)" if results.get("quick") else ""
    logs = sorted(results.get("logs") or {})
    more = f"; logs in {', '.join(lit(name) for name in logs)}" if logs else ""
    return (f"Reproduce with {lit(results.get('command', ''))}{quick}. {runs} simulation "
            f"runs; raw records in {lit('results.json')}, table rows in "
            f"{lit('results.csv')}{more}.")


def render_html(results: dict, images: dict[str, str]) -> str:
    """report.html, self-contained: `images` maps figure name to base64 PNG data."""
    esc = html.escape
    title = str(results.get("title") or results.get("experiment", "Experiment"))
    body = [f"<h1>{esc(title)}</h1>", markdown_to_html(results.get("description") or ""),
            f"<p>{_reproduce_line(results, '<code>{}</code>', html.escape)}</p>"]
    for table in results.get("tables", []):
        body += [f"<h2>{esc(str(table.get('title', '')))}</h2>", _html_table(table)]
        if table.get("note"):
            body.append(f'<div class="note">{markdown_to_html(table["note"])}</div>')
    for fig in results.get("figures", []):
        cap = esc(str(fig.get("title") or fig["name"]))
        body += [f"<h2>{cap}</h2>", f'<figure><img alt="{cap}" '
                 f'src="data:image/png;base64,{images[fig["name"]]}"></figure>']
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _html_table(table: dict) -> str:
    cols = table.get("columns", [])
    numeric = _numeric_columns(table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    cls = ['<td class="num">' if n else "<td>" for n in numeric]
    rows = []
    for row in table.get("rows", []):
        padded = list(row) + [None] * (len(cols) - len(row))
        rows.append("<tr>" + "".join(
            f"{c}{html.escape(format_cell(v))}</td>"
            for v, c in zip(padded, cls)) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + \
        "\n</tbody>\n</table>"


def markdown_to_html(text: str) -> str:
    """Minimal markdown blocks: paragraphs, '#' headings, '-'/'*' and '1.' lists."""
    out: list[str] = []
    para: list[str] = []
    lst: str | None = None  # "ul" or "ol" while inside a list

    def flush() -> None:
        nonlocal lst
        if para:
            out.append(f"<p>{inline_html(' '.join(para))}</p>")
            para.clear()
        if lst:
            out.append(f"</{lst}>")
            lst = None

    for line in text.splitlines():
        item = re.match(r"\s*(?:([-*+])|\d+[.)])\s+(.*)", line)
        head = re.match(r"(#{1,6})\s+(.*)", line)
        if not line.strip() or head:
            flush()
            if head:  # shift by two so a description's headings sit under the report's h2
                level = min(len(head.group(1)) + 2, 6)
                out.append(f"<h{level}>{inline_html(head.group(2))}</h{level}>")
        elif item:
            kind = "ul" if item.group(1) else "ol"
            if para or lst != kind:
                flush()
                out.append(f"<{kind}>")
                lst = kind
            out.append(f"<li>{inline_html(item.group(2))}</li>")
        elif lst and line.startswith(("  ", "\t")):  # continuation of the last list item
            out[-1] = out[-1][:-5] + " " + inline_html(line.strip()) + "</li>"
        else:
            if lst:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(out)


def inline_html(text: str) -> str:
    """Escape text, then render `code`, **bold**, *italics* and [links](url)."""
    pieces = re.split(r"(`[^`]+`)", text)
    out = []
    for piece in pieces:
        if len(piece) > 1 and piece.startswith("`") and piece.endswith("`"):
            out.append(f"<code>{html.escape(piece[1:-1])}</code>")
            continue
        s = html.escape(piece)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
        s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', s)
        out.append(s)
    return "".join(out)


def _write_csv(tables: list[dict], path: Path) -> Path:
    columns: list[str] = []
    for table in tables:
        columns += [str(c) for c in table.get("columns", []) if str(c) not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["table", *columns])
        for table in tables:
            index = [columns.index(str(c)) for c in table.get("columns", [])]
            for row in table.get("rows", []):
                cells = [""] * len(columns)
                for i, v in zip(index, row):
                    cells[i] = "" if v is None else v
                writer.writerow([table.get("title", ""), *cells])
    return path
