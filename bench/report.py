"""What a `make bench` run (bench/run.py) shows: its Markdown table, the side-by-side of the
designs, the PNGs, and docs/performance.md.

Everything here reads the run record that bench/run.py keeps, a dict:
  {"stamp", "command", "git", "machine", "quick", "seconds", "ok",
   "scenarios": [{"name", "kind", "via", "design", "status", "detail", "figures", "targets", ...}]}
where each scenario's "targets" are already evaluated ([{"text", "value", "unit", "met"}]) and
"figures" are what the scenario tool wrote (bench/results.write), `plots` included while the run
is in memory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from bench import plots as plots_mod

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
DESIGNS = ("gavel", "sync", "naive")

# Hand-written sections of docs/performance.md: the text between these markers survives a
# regeneration; a section the doc does not have yet gets its default.
HAND_BEGIN = "<!-- hand-kept: {} -->"
HAND_END = "<!-- /hand-kept: {} -->"
HAND_SECTIONS = {
    "limits": "## What limits the figures\n\n(Written by hand after a full run: for each target missed, what "
              "bounds the figure, which process's CPU, the database or Redis, with the evidence.)\n",
}


# --- figures ----------------------------------------------------------------------------------


def dig(figures: dict | None, path: str):
    """figures["a"]["b"][2] for "a.b.2"; None when a step is missing."""
    cur = figures
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
        if cur is None:
            return None
    return cur


def num(v) -> str:
    """A figure for a table: '-' when absent, thousands separators from 100 up."""
    if v is None or isinstance(v, bool):
        return "-" if v is None else str(v)
    if isinstance(v, str):
        return v
    if v == float("inf"):
        return "inf"
    if isinstance(v, int) or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"


def ratio(a, b) -> float | None:
    if a is None or b is None or not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
        return None
    return a / b


def _bidding(f: dict) -> str:
    parts = [f"{num(f.get('decided_per_s'))} decided bids/s",
             f"submit->result p50 / p99 {num(dig(f, 'latency_ms.submit_to_result.0'))} / "
             f"{num(dig(f, 'latency_ms.submit_to_result.2'))} ms",
             f"submit->event seen p99 {num(dig(f, 'latency_ms.submit_to_event_seen.2'))} ms"]
    if f.get("rate_target"):
        parts.insert(0, f"open loop at {num(f['rate_target'])} bids/s")
    if "ordering_violations" in f:
        parts.append(f"ordering violations {num(f['ordering_violations'])}")
    return "; ".join(parts)


def _fanout(f: dict) -> str:
    d = f.get("delivery") or {}
    rss = "; ".join(f"node{r['node']} {num(r['idle_kb'] / 1024)} MB" for r in f.get("rss") or [])
    return (f"{num(d.get('received'))} of {num(d.get('expected'))} frames delivered, lost {num(d.get('missing'))}, "
            f"late {num(d.get('late'))}; delivery p50 / p99 {num(dig(f, 'latency_ms_p50_p95_p99_max.0'))} / "
            f"{num(dig(f, 'latency_ms_p50_p95_p99_max.2'))} ms; {num(f.get('kb_per_socket_max'))} KB per idle "
            f"socket; RSS {rss or '-'}")


def _timers(f: dict) -> str:
    lat = "lateness_ms.at_minus_ends_at"
    return (f"lateness min / p50 / p99 / max {num(dig(f, lat + '.0'))} / {num(dig(f, lat + '.1'))} / "
            f"{num(dig(f, lat + '.2'))} / {num(dig(f, lat + '.3'))} ms; ended twice "
            f"{num(f.get('ended_twice'))}")


def _storm(f: dict) -> str:
    return f"{num(f.get('resumed'))} of {num(f.get('sockets'))} sockets resumed in {num(f.get('all_resumed_s'))} s"


KEY_FIGURES = {"hot-auction": _bidding, "many-auctions": _bidding, "fanout": _fanout, "timers": _timers,
               "reconnect-storm": _storm}


def key_figures(s: dict) -> str:
    if not s.get("figures"):
        return "-"
    return KEY_FIGURES.get(s["kind"], lambda f: "-")(s["figures"])


# --- tables -----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def status_cell(s: dict) -> str:
    text = s["status"].upper()
    if s.get("detail") and s["status"] != "pass":
        detail = s["detail"] if len(s["detail"]) <= 160 else s["detail"][:157] + "..."
        text += f" ({detail})"
    return _cell(text)


def met_cell(t: dict) -> str:
    value = f"{num(t['value'])}{'' if t['unit'] == 'x' else ' '}{t['unit']}".strip()
    if t["met"] is None:
        return "not measured"
    return f"{'yes' if t['met'] else '**no**'} ({value})"


def summary_table(run: dict) -> str:
    lines = ["| scenario | status | key figures | issue target | met? |", "|---|---|---|---|---|"]
    for s in run["scenarios"]:
        targets = s.get("targets") or []
        lines.append(f"| {s['name']} | {status_cell(s)} | {_cell(key_figures(s))} | "
                     f"{'<br>'.join(_cell(t['text']) for t in targets) or '-'} | "
                     f"{'<br>'.join(met_cell(t) for t in targets) or '-'} |")
    return "\n".join(lines)


def side_by_side(run: dict) -> list[dict]:
    """Per bidding scenario and way in (hot-auction ws, many-auctions ws, ...): each design's
    decided bids/s and p99 submit->result, and Gavel's as a ratio to each, from this run."""
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for s in run["scenarios"]:
        if s.get("design") in DESIGNS and not s.get("half_rate_of"):
            groups.setdefault((s["kind"], s["via"]), {})[s["design"]] = s
    rows = []
    for (kind, via), by_design in groups.items():
        if len(by_design) < 2:
            continue
        gavel = (by_design.get("gavel") or {}).get("figures")
        g_rate, g_p99 = dig(gavel, "decided_per_s"), dig(gavel, "latency_ms.submit_to_result.2")
        for design in DESIGNS:
            s = by_design.get(design)
            if s is None:
                continue
            f = s.get("figures")
            rate, p99 = dig(f, "decided_per_s"), dig(f, "latency_ms.submit_to_result.2")
            rows.append({"scenario": f"{kind}-{via}", "name": s["name"], "design": design, "status": s["status"],
                         "decided_per_s": rate, "p99_ms": p99, "ordering_violations": dig(f, "ordering_violations"),
                         "gavel_rate_ratio": ratio(g_rate, rate), "gavel_p99_ratio": ratio(g_p99, p99)})
    return rows


def side_by_side_table(rows: list[dict]) -> str:
    lines = ["| scenario | design | status | decided bids/s | p99 submit->result ms | ordering violations | "
             "Gavel's bids/s ÷ this | Gavel's p99 ÷ this |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['design']} | {r['status']} | {num(r['decided_per_s'])} | "
                     f"{num(r['p99_ms'])} | {num(r['ordering_violations'])} | "
                     + " | ".join("-" if x is None else f"{x:.2f}x" for x in (r["gavel_rate_ratio"],
                                                                            r["gavel_p99_ratio"])) + " |")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def machine_line(run: dict) -> str:
    m = run["machine"]
    return (f"{m.get('nproc')} cores ({m.get('cpu', 'unknown CPU')}), {m.get('mem_gib')} GiB, Linux "
            f"{m.get('kernel')}, Python {m.get('python')}, load average before the run "
            f"{' '.join(m.get('loadavg') or []) or '-'}")


def commit_line(run: dict) -> str:
    g = run["git"]
    return f"`{g['commit'][:12]}`" + (f" + uncommitted changes in {', '.join(g['uncommitted'][:6])}"
                                      if g.get("uncommitted") else "")


def measured(run: dict) -> str:
    """When: the run's start, or from the first to the last part of a merged record."""
    def utc(stamp: str) -> str:
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]} UTC"

    stamps = sorted(p["stamp"] for p in run.get("parts") or []) or [run["stamp"]]
    return utc(stamps[0]) + (f" to {utc(stamps[-1])}" if len(stamps) > 1 else "")


def commands(run: dict) -> str:
    """The run's exact command, and for a record merged with --from, each part's."""
    text = f"`{run['command']}`"
    parts = run.get("parts") or []
    if parts:
        text += ", merging the runs " + "; ".join(
            f"`{p['command']}` ({p['stamp']}, commit `{p['git']['commit'][:12]}`)" for p in parts)
    return text


def markdown(run: dict, plot_links: list[str] = ()) -> str:
    """The run's `<stamp>.md`; `plot_links` are its PNGs relative to it."""
    passed = sum(s["status"] == "pass" for s in run["scenarios"])
    out = [f"# Benchmark run {run['stamp']}{' (quick smoke)' if run.get('quick') else ''}", "",
           commands(run), "",
           f"Commit {commit_line(run)}; {machine_line(run)}. {passed} of {len(run['scenarios'])} scenarios passed"
           + f" in {duration(run.get('seconds') or 0)}.", "",
           summary_table(run), ""]
    rows = side_by_side(run)
    if rows:
        out += ["## Gavel against the alternatives (same run, same services)", "", side_by_side_table(rows), ""]
    if plot_links:
        out += ["## Plots", ""] + [f"![{Path(link).stem}]({link})" for link in plot_links] + [""]
    return "\n".join(out)


# --- plots ------------------------------------------------------------------------------------


def render_plots(run: dict, out_dir: Path) -> list[Path]:
    """Each scenario's PNGs, then one CDF and one timeline per side-by-side group with every
    design's series on it."""
    paths: list[Path] = []
    for s in run["scenarios"]:
        p = dig(s.get("figures"), "plots")
        if p:
            paths += plots_mod.scenario_pngs(s["name"], p, out_dir)
    groups: dict[str, dict[str, dict]] = {}
    for s in run["scenarios"]:
        p = dig(s.get("figures"), "plots")
        if p and s.get("design") in DESIGNS and not s.get("half_rate_of"):
            groups.setdefault(f"{s['kind']}-{s['via']}", {})[s["design"]] = p
    for group, by_design in groups.items():
        if len(by_design) < 2:
            continue
        for key, draw in (("cdf", plots_mod.cdf_png), ("timeline", plots_mod.timeline_png)):
            series = {f"{design}: {name}": values for design, p in by_design.items()
                      for name, values in (p.get(key) or {}).items()}
            png = draw(f"{group}: Gavel, sync and naive", series, out_dir / f"{group}-designs-{key}.png")
            if png:
                paths.append(png)
    return paths


# --- docs/performance.md ----------------------------------------------------------------------


def hand_sections(text: str) -> dict[str, str]:
    """The hand-kept sections of an existing doc, by name."""
    found = {}
    for name in HAND_SECTIONS:
        m = re.search(re.escape(HAND_BEGIN.format(name)) + r"\n(.*?)" + re.escape(HAND_END.format(name)), text,
                      re.DOTALL)
        if m:
            found[name] = m.group(1)
    return found


def render_doc(run: dict, record: str, plot_links: list[str], previous: str = "") -> str:
    """docs/performance.md from a run: generated parts, with the hand-kept sections of
    `previous` (the doc as it was) carried over. `record` is the run's JSON, relative to the
    repository; `plot_links` the PNGs relative to the doc."""
    kept = {**HAND_SECTIONS, **hand_sections(previous)}
    rows = side_by_side(run)
    out = [
        "# Performance",
        "",
        "<!-- Generated by bench/run.py (`make bench`) from the run named below. Edit only between the hand-kept "
        "markers: everything else is rewritten by the next run. -->",
        "",
        f"Measured {measured(run)} on commit {commit_line(run)}, by",
        "",
        "```sh",
        "make bench",
        "```",
        "",
        f"which ran {commands(run)}. Every figure, and each scenario's own results and log: `{record}` and "
        "the folder beside it. How each scenario works, and its options: `bench/README.md`.",
        "",
        "## Machine",
        "",
        f"{machine_line(run)}. PostgreSQL and Redis run on the same machine as the platform and the load "
        "clients: everything shares these cores.",
        "",
        "## Results",
        "",
        "Targets are issue 5's. A scenario passes when its tool's own checks held (nothing lost, stream gap-free, "
        "ledger sums to 0, ...), whatever its speed.",
        "",
        summary_table(run),
        "",
    ]
    if rows:
        out += ["## Gavel against the alternatives",
                "",
                "The same scenario against the two designs a team would otherwise pick, built in `bench/` and run on "
                "the same services in the same run: *sync* decides in the bid view under `select_for_update` and "
                "broadcasts after commit; *naive* is one Celery task per bid on one shared prefork queue.",
                "",
                side_by_side_table(rows),
                ""]
    if plot_links:
        out += ["## Plots", ""] + [f"![{Path(link).stem}]({link})" for link in plot_links] + [""]
    for name, text in kept.items():
        out += [HAND_BEGIN.format(name), text.rstrip("\n"), HAND_END.format(name), ""]
    return "\n".join(out)


def write_doc(run: dict, record: Path, plot_paths: list[Path], doc: Path = DOC) -> Path:
    """Regenerate `doc` from the run, its PNGs copied (old ones removed) into the folder beside
    it named like it."""
    plot_dir = doc.parent / doc.stem
    if plot_dir.exists():
        for old in plot_dir.glob("*.png"):
            old.unlink()
    plot_dir.mkdir(parents=True, exist_ok=True)
    for p in plot_paths:
        shutil.copyfile(p, plot_dir / p.name)
    previous = doc.read_text() if doc.exists() else ""
    try:
        shown = record.resolve().relative_to(ROOT)
    except ValueError:
        shown = record
    doc.write_text(render_doc(run, str(shown), [f"{plot_dir.name}/{p.name}" for p in plot_paths], previous))
    return doc

