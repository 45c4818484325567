"""PNG plots of experiment figures (the `figures` entries of an experiment's results).

A figure is plain data: `kind` (cdf, line, step, bar), axis labels, log flags and 1..n
`panels`, each a titled list of `series` ({label, x, y}, and `dashed: true` for a reference
line drawn over the data). Panels sit side by side and wrap
into rows of three. Rendering uses `matplotlib.figure.Figure` on the Agg canvas directly, so
no pyplot global state is touched and nothing needs a display.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

KINDS = ("cdf", "line", "step", "bar")
COLS = 3  # panels per row before wrapping
LEGEND_MAX = 10  # legend entries shown at most; the rest are counted in its title
INSIDE_MAX = 4  # up to this many labels fit inside a panel without hiding data
DPI = 110


def render_figure(fig: dict, path: Path) -> Path:
    """Draw `fig` into a PNG at `path` (folders created); returns the path."""
    kind = fig.get("kind", "line")
    if kind not in KINDS:
        raise ValueError(f"figure {fig.get('name')!r}: unknown kind {kind!r}; known: {KINDS}")
    panels = fig.get("panels") or [{"title": "", "series": []}]
    nrows = math.ceil(len(panels) / COLS)
    ncols = math.ceil(len(panels) / nrows)  # 4 panels as 2x2 rather than 3 + 1
    colors = _colors(panels)
    legend_w = 1.6 if len(colors) > INSIDE_MAX else 0.0  # room for a legend beside the panels
    figure = Figure(figsize=(4.8 * ncols + 0.4 + legend_w, 3.7 * nrows + 0.6), dpi=DPI,
                    layout="constrained")
    FigureCanvasAgg(figure)
    # a CDF always spans 0..1, so one y scale makes panels comparable at a glance
    axes = figure.subplots(nrows, ncols, squeeze=False, sharey=(kind == "cdf"))
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        _draw_panel(ax, kind, panels[i], fig, colors)
        if i % ncols == 0 or kind != "cdf":
            ax.set_ylabel(fig.get("ylabel", ""))
    _legend(figure, axes.flat[:len(panels)], len(colors))
    if fig.get("title"):
        figure.suptitle(fig["title"], fontsize="large")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def _colors(panels: list[dict]) -> dict[str, tuple]:
    """One colour per series label across all panels, so a tenant looks the same everywhere."""
    labels: list[str] = []
    for panel in panels:
        for s in panel.get("series", []):
            if str(s.get("label", "")) not in labels:
                labels.append(str(s.get("label", "")))
    n = len(labels)
    if n <= 20:  # qualitative maps keep few labels clearly apart
        cmap = colormaps["tab10" if n <= 10 else "tab20"]
        return {label: cmap(i) for i, label in enumerate(labels)}
    cmap = colormaps["viridis"]  # too many for distinct hues: spread them along a gradient
    return {label: cmap(i / (n - 1)) for i, label in enumerate(labels)}


def _draw_panel(ax, kind: str, panel: dict, fig: dict, colors: dict[str, tuple]) -> None:
    series = panel.get("series", [])
    drawn = _draw_bars(ax, series, colors) if kind == "bar" else \
        sum(_draw_series(ax, kind, s, fig, colors) for s in series)
    ax.set_title(panel.get("title", ""), fontsize="medium")
    ax.set_xlabel(fig.get("xlabel", ""))
    ax.grid(True, alpha=0.3)
    if fig.get("logx") and kind != "bar" and drawn:
        ax.set_xscale("log")
    if fig.get("logy") and drawn:
        ax.set_yscale("log")
    if kind == "cdf":
        ax.set_ylim(0, 1.02)
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                color="grey")
        ax.set_xticks([])  # made-up 0..1 ticks would read as data
        if kind != "cdf":
            ax.set_yticks([])
        return


def _finite_xy(s: dict, logx: bool, logy: bool) -> tuple[np.ndarray, np.ndarray]:
    """The points of a series with a value on both axes (NaN/None dropped, and <= 0 on logs)."""
    x = np.asarray([math.nan if v is None else v for v in s.get("x", [])], dtype=float)
    y = np.asarray([math.nan if v is None else v for v in s.get("y", [])], dtype=float)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    keep = np.isfinite(x) & np.isfinite(y)
    if logx:
        keep &= x > 0
    if logy:
        keep &= y > 0
    return x[keep], y[keep]


def _draw_series(ax, kind: str, s: dict, fig: dict, colors: dict[str, tuple]) -> int:
    """Plot one series; returns 1 when something was drawn, 0 when it had no usable points."""
    label = str(s.get("label", ""))
    style = {"label": label, "color": colors.get(label)}
    if kind == "cdf":
        x = np.asarray([math.nan if v is None else v for v in s.get("x", [])], dtype=float)
        x = np.sort(x[np.isfinite(x)])
        if not len(x):
            return 0
        # fractions are over all finite values, even those a log axis cannot show
        y = np.arange(1, len(x) + 1) / len(x)
        if fig.get("logx"):
            y, x = y[x > 0], x[x > 0]
        ax.step(np.r_[x[:1], x], np.r_[0.0, y], where="post", linewidth=1.5, **style)
        return 1 if len(x) else 0
    x, y = _finite_xy(s, bool(fig.get("logx")), bool(fig.get("logy")))
    if not len(x):
        return 0
    if kind == "step":
        order = np.argsort(x, kind="stable")
        ax.step(x[order], y[order], where="post", linewidth=1.4, **style)
    elif s.get("dashed"):
        ax.plot(x, y, linestyle="--", linewidth=1.6, zorder=3, **style)
    else:
        ax.plot(x, y, marker="o", markersize=4, linewidth=1.4, **style)
    return 1


def _draw_bars(ax, series: list[dict], colors: dict[str, tuple]) -> int:
    """Grouped bars: categories along x, one bar per series inside each category."""
    cats: list[str] = []
    for s in series:
        cats += [str(c) for c in s.get("x", []) if str(c) not in cats]
    if not cats:
        return 0
    width = 0.8 / max(len(series), 1)
    drawn = 0
    for j, s in enumerate(series):
        vals = dict(zip((str(c) for c in s.get("x", [])), s.get("y", [])))
        pos = [i for i, c in enumerate(cats) if _is_number(vals.get(c))]
        if not pos:
            continue
        label = str(s.get("label", ""))
        ax.bar([p - 0.4 + width * (j + 0.5) for p in pos], [float(vals[cats[p]]) for p in pos],
               width=width, label=label, color=colors.get(label))
        drawn = 1
    ax.set_xticks(range(len(cats)), cats)
    # long or many category names overlap when horizontal
    if len(cats) > 4 or max(map(len, cats)) > 8:
        ax.tick_params(axis="x", labelrotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    return drawn


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def _legend(figure: Figure, axes, n_labels: int) -> None:
    """A few labels: a legend inside each panel. Many: one legend right of all panels, which
    works because a label has the same colour in every panel, and hides no data."""
    if n_labels <= INSIDE_MAX:
        for ax in axes:
            if ax.get_legend_handles_labels()[0]:  # unlabelled series never reach a legend
                ax.legend(fontsize="small", framealpha=0.85, loc="best")
        return
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if not seen:
        return
    extra = len(seen) - LEGEND_MAX
    shown = list(seen.items())[:LEGEND_MAX]
    figure.legend([h for _, h in shown], [lab for lab, _ in shown], loc="outside right upper",
                  title=f"+{extra} more" if extra > 0 else None, fontsize="small",
                  title_fontsize="small")
