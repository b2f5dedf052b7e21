"""PNG plots of a benchmark run from the `plots` key of each scenario's figures
(bench/results.py: {"cdf": {series: [ms, sorted]}, "timeline": {series: [[t_s, value], ...]}}).

    .venv/bin/python -m bench.plots bench/results/<stamp>-hot-auction-ws.json --out /tmp/plots

Per scenario: `<name>-cdf.png`, every latency series of the scenario on one log-x CDF, and
`<name>-timeline.png`, every timeline series over the run. matplotlib's Agg backend draws them
(no display, no pyplot state shared between figures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

SIZE_IN = (8.0, 4.5)
DPI = 110


def _finish(fig: Figure, ax, title: str, path: Path) -> Path:
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _rank(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q / 100 * len(sorted_ms)))]


def cdf_png(title: str, series: dict[str, list[float]], path: Path) -> Path | None:
    """One CDF line per series, x in ms on a log axis. A log axis has no place for 0 or less
    (a timer that fired early), so those values are left out and the legend says how many.
    None when no series has a value."""
    fig = Figure(figsize=SIZE_IN)
    ax = fig.add_subplot()
    drawn = 0
    for name, values in series.items():
        s = sorted(values)
        if not s:
            continue
        positive = [v for v in s if v > 0]
        if not positive:
            continue
        skipped = len(s) - len(positive)
        label = (f"{name} (n {len(s):,}, p50 {_rank(s, 50):,.1f}, p99 {_rank(s, 99):,.1f} ms"
                 + (f"; {skipped:,} <= 0 not drawn)" if skipped else ")"))
        # The y of each point is its rank among all values, drawn ones or not.
        ys = [(skipped + i + 1) / len(s) for i in range(len(positive))]
        ax.step(positive, ys, where="post", label=label)
        drawn += 1
    if not drawn:
        return None
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 20, not 2x10^1
    ax.xaxis.set_major_formatter(plain)
    lo, hi = ax.get_xlim()
    if hi < lo * 100:  # under two decades the powers of ten alone leave the axis almost bare
        ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("fraction at or below")
    ax.set_ylim(0, 1.01)
    return _finish(fig, ax, title, path)


def timeline_png(title: str, series: dict[str, list[list[float]]], path: Path) -> Path | None:
    """One line per series: value over seconds from the start of the measured phase. None when
    no series has a point."""
    fig = Figure(figsize=SIZE_IN)
    ax = fig.add_subplot()
    drawn = 0
    for name, points in series.items():
        if not points:
            continue
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.2)
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("seconds from the start of the measured phase")
    ax.set_ylabel("value (unit in the series' name)")
    ax.set_ylim(bottom=0)
    return _finish(fig, ax, title, path)


def scenario_pngs(name: str, plots: dict, out_dir: Path, title: str | None = None) -> list[Path]:
    """`<name>-cdf.png` and `<name>-timeline.png` in `out_dir` from one scenario's `plots`
    (each only when it has data); the paths written."""
    title = title or name
    written = [
        cdf_png(f"{title}: latency CDF", plots.get("cdf") or {}, out_dir / f"{name}-cdf.png"),
        timeline_png(f"{title}: over time", plots.get("timeline") or {}, out_dir / f"{name}-timeline.png"),
    ]
    return [p for p in written if p is not None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.plots", description="PNG plots from scenario results files")
    p.add_argument("results", nargs="+", help="<stamp>-<scenario>.json files written by bench/results.write")
    p.add_argument("--out", default=".", help="directory for the PNGs (default: here)")
    a = p.parse_args(argv)
    for path in a.results:
        doc = json.loads(Path(path).read_text())
        plots = doc.get("figures", {}).get("plots")
        if not plots:
            print(f"{path}: no plots in its figures", file=sys.stderr)
            continue
        for png in scenario_pngs(doc["scenario"], plots, Path(a.out)):
            print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
