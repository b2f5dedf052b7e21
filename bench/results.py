"""Where a benchmark run's figures go: `bench/results/<UTC timestamp>-<scenario>.json` (every
figure, the command, the git commit, the machine) and a `.md` beside it (the table).

Reference runs are meant to be committed from bench/results/. Toy and test runs pass another
directory (`--results DIR`), so they never write into the repository.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "bench" / "results"


def git_commit() -> dict:
    """HEAD, and the tracked files that differ from it (read-only git)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    # line[2:]: git() strips the output, and with it the first line's leading status blank
    changed = [line[2:].strip() for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if line.strip()]
    return {"commit": git("rev-parse", "HEAD") or "unknown", "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "uncommitted": changed}


def loadavg() -> list[str]:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[:3]
    except OSError:
        return []


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    mem_kb = 0
    try:
        with open("/proc/meminfo") as fh:
            mem_kb = int(fh.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "loadavg": loadavg(), "mem_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(), "host": platform.node()}


def command_line(argv: list[str] | None = None) -> str:
    argv = sys.argv if argv is None else argv
    prog = f"python -m {sys.modules['__main__'].__spec__.name}" if getattr(
        sys.modules.get("__main__"), "__spec__", None) else shlex.quote(argv[0])
    return " ".join([prog, *(shlex.quote(a) for a in argv[1:])])


def stamp(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y%m%dT%H%M%SZ")


def write(scenario: str, figures: dict, markdown: str, directory: str | Path | None = None,
          *, started: float | None = None) -> tuple[Path, Path]:
    """Write `<stamp>-<scenario>.json` and `.md` into `directory` (default bench/results/).
    `figures` is stored under "figures" next to the run's context; returns both paths."""
    out = Path(directory) if directory else DEFAULT_DIR
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{stamp(started)}-{scenario}"
    doc = {"scenario": scenario, "started_utc": stamp(started), "command": command_line(),
           "git": git_commit(), "machine": machine(), "figures": figures}
    json_path = base.with_suffix(".json")
    md_path = base.with_suffix(".md")
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    header = (f"# {scenario} ({stamp(started)})\n\n`{doc['command']}`\n\ncommit {doc['git']['commit'][:12]}"
              + (f" + uncommitted changes in {', '.join(doc['git']['uncommitted'][:6])}"
                 if doc["git"]["uncommitted"] else "")
              + f"; {doc['machine']['nproc']} cores, load {' '.join(doc['machine']['loadavg'])}\n\n")
    md_path.write_text(header + markdown.rstrip() + "\n")
    return json_path, md_path


def md_table(rows: list[tuple[str, str]], head: tuple[str, str] = ("figure", "value")) -> str:
    """A two-column Markdown table."""
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    return "\n".join(lines)


def cpu_share(cpu: dict, extra: tuple[str, ...] = ()) -> str:
    """A CpuMeter result as "web 80%, bids1 30%, ...", in the order the stack's processes matter
    (`extra`: kinds of the tool's own, such as its client processes)."""
    order = ["web", *sorted(k for k in cpu if k.startswith("bids")), "naive", "worker", "beat", "postgres",
             "postgres (shared)", "redis", *extra]
    return ", ".join(f"{k} {cpu[k]['core_pct']:.0f}%" for k in order if k in cpu and cpu[k]["core_pct"] is not None)


def machine_row(cpu: dict) -> tuple[str, str]:
    m = cpu["machine"]
    return ("machine", f"busy {m['busy_pct']}% of {os.cpu_count()} cores; other users' processes "
                       f"{m['others_s']:.1f} core-s over {cpu['window_s']:.1f} s")


def audit_check(report: dict) -> dict:
    """auctions.audit's report (`as_dict()`) as a tool's check: every invariant, the broken ones
    with their first problems."""
    parts = [f"{c['name']} " + ("ok" if c["ok"] else f"FAILED ({c['problem_count']}: {'; '.join(c['problems'][:2])})")
             for c in report["checks"]]
    return {"ok": report["ok"], "detail": f"{report['auctions']} auctions: " + ", ".join(parts)}


def check_lines(checks: dict) -> list[str]:
    """The checks as the terminal report prints them."""
    return ["checks:", *(f"  {'PASS' if c['ok'] else 'FAIL'}  {name}" + (f": {c['detail']}" if c["detail"] else "")
                         for name, c in checks.items())]


def rows_text(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


def md_with_checks(rows: list[tuple[str, str]], checks: dict) -> str:
    """The figures' table followed by one row per check: a scenario's Markdown summary."""
    rows = rows + [(f"check: {name}", ("PASS" if c["ok"] else "FAIL") + (f" ({c['detail']})" if c["detail"] else ""))
                   for name, c in checks.items()]
    return md_table(rows)


def print_report(head: str, rows: list[tuple[str, str]], checks: dict, after: list[str] = ()) -> None:
    """A scenario's end-of-run report on the terminal: its head line, figures, checks, then
    `after` (such as the issue's targets), between rules."""
    rule = "=" * 100
    lines = ["", rule, head, rule, *rows_text(rows), *check_lines(checks), *after, rule]
    print("\n".join(lines), flush=True)
