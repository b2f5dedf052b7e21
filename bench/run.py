"""`make bench`: every scenario of issue 5, one after another, as one run.

    .venv/bin/python -m bench.run                          # everything (`make bench`)
    .venv/bin/python -m bench.run --quick                  # the one-minute smoke (`make bench-quick`)
    .venv/bin/python -m bench.run --only 'hot-auction-*' fanout-1000
    .venv/bin/python -m bench.run --list                   # the scenarios and their commands
    .venv/bin/python -m bench.run --from bench/results/A.json bench/results/B.json  # merge runs, re-render

Each scenario is a child process, `python -m bench.<tool> ... --results bench/results/<run>/`,
bounded by its own timeout (then SIGTERM, which the tools answer by stopping everything they
started, and SIGKILL after STOP_GRACE_S). Its output is printed with its name in front and kept in
`<run>/<name>.log`. A scenario that fails, times out, or whose tool (or option) does not exist yet
is reported as such and the run goes on; the exit code is 0 only when every scenario passed.

After each scenario, and at the end:
- `bench/results/<run>.json`: every scenario's status, figures (the plot data stays in the
  scenario's own results file), the issue's targets and whether each was met; commit, machine;
- `bench/results/<run>.md`: one table (scenario, key figures, issue target, met?) and the
  side-by-side of Gavel against the sync and naive designs;
at the end, PNGs in `bench/results/<run>/plots/`, and docs/performance.md regenerated from the run
(not with --quick, --only or --no-docs), keeping its hand-written sections (bench/report.py).

--quick writes into $TMPDIR/gavel-bench-quick/ and leaves docs alone.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench import results as results_mod  # noqa: E402
from bench.guard import run_guarded  # noqa: E402
from bench.report import dig, ratio  # noqa: E402
from deploy.launch import DIE_WITH_PARENT  # noqa: E402

PYTHON = sys.executable
STOP_GRACE_S = 60.0  # a tool stops its stack in up to ~30 s after SIGTERM


def log(msg: str) -> None:
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stdout.flush()


# --- the scenarios ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str  # unique in a run; the tables' first column
    kind: str  # hot-auction, many-auctions, fanout, timers, reconnect-storm
    module: str
    args: tuple[str, ...]
    timeout_s: float
    via: str = ""
    design: str = ""  # gavel, sync or naive for the bidding scenarios
    half_rate_of: str = ""  # open loop at half the decided bids/s that scenario reached in this run

    def command(self, rate: float | None = None) -> list[str]:
        extra = ("--rate", f"{rate:.1f}") if rate is not None else ()
        return [PYTHON, "-m", self.module, *self.args, *extra]


def designs(kind: str, via: str, args: tuple[str, ...], timeout_s: float) -> list[Scenario]:
    """Gavel and the two designs a team would otherwise pick, on the same scenario (issue 5,
    "Side by side"). Gavel's run passes no --design, so it works with any version of the tool."""
    return [Scenario(f"{kind}-{via}" + ("" if d == "gavel" else f"-{d}"), kind, "bench.hot_auction",
                     (*args, *(() if d == "gavel" else ("--design", d))), timeout_s, via=via, design=d)
            for d in report.DESIGNS]


HOT = ("--bidders", "200", "--seconds", "30")
MANY = ("--auctions", "100", "--bidders", "1000", "--seconds", "30")
FANOUT = ("--nodes", "2", "--rate", "5", "--seconds", "20")

SCENARIOS: tuple[Scenario, ...] = (
    *designs("hot-auction", "ws", ("--via", "ws", *HOT), 900),
    # issue 5: "p99 submit -> result <= 50 ms at half the maximum rate"
    Scenario("hot-auction-ws-half-rate", "hot-auction", "bench.hot_auction", ("--via", "ws", *HOT), 900,
             via="ws", half_rate_of="hot-auction-ws"),
    *designs("hot-auction", "rest", ("--via", "rest", *HOT), 900),
    # 1,000 bidders: set up in bulk (django_side bidders), ~20 s per design.
    *designs("many-auctions", "ws", ("--via", "ws", *MANY), 1800),
    *(Scenario(f"fanout-{w}", "fanout", "bench.ws_fanout", ("--watchers", str(w), *FANOUT), 600)
      for w in (1000, 5000, 10000)),
    Scenario("timers", "timers", "bench.timers", ("--auctions", "1000", "--window", "60"), 900),
    Scenario("reconnect-storm", "reconnect-storm", "bench.reconnect_storm", ("--sockets", "5000"), 900),
)

# The one-minute smoke: each of these starts a stack of its own (~15 s before the first bid), so
# only two fit; the suite's toy tests (tests/test_bench_*.py) cover every tool.
QUICK: tuple[Scenario, ...] = (
    Scenario("hot-auction-ws", "hot-auction", "bench.hot_auction",
             ("--via", "ws", "--bidders", "5", "--seconds", "5", "--drain", "20"), 150, via="ws", design="gavel"),
    Scenario("fanout-100", "fanout", "bench.ws_fanout",
             ("--watchers", "100", "--clients", "1", "--rate", "5", "--seconds", "3", "--drain", "10"), 120),
)


# --- the targets (issue 5, "Targets on this 2-core box") ---------------------------------------


@dataclass(frozen=True)
class Target:
    scenarios: str  # fnmatch pattern of the scenario names it applies to
    text: str  # as issue 5 words it
    value: Callable[[dict, dict[str, dict]], float | None]  # (scenario, every scenario of the run by name)
    op: str  # ">=", "<=" or "=="
    bound: float
    unit: str = ""

    def evaluate(self, s: dict, run: dict[str, dict]) -> dict:
        v = self.value(s, run)
        met = None
        if isinstance(v, int | float) and not isinstance(v, bool):
            met = {">=": v >= self.bound, "<=": v <= self.bound, "==": v == self.bound}[self.op]
        return {"text": self.text, "value": v, "unit": self.unit, "met": met}


def figure(path: str) -> Callable[[dict, dict], float | None]:
    return lambda s, _run: dig(s.get("figures"), path)


def rate_ratio_to(design: str) -> Callable[[dict, dict], float | None]:
    """Decided bids/s over the same scenario's `design` run in this run ("hot-auction-ws-sync")."""
    def value(s: dict, run: dict[str, dict]) -> float | None:
        other = run.get(f"{s['name']}-{design}") or {}
        return ratio(dig(s.get("figures"), "decided_per_s"), dig(other.get("figures"), "decided_per_s"))
    return value


TARGETS: tuple[Target, ...] = (
    Target("hot-auction-ws", ">= 2,000 decided bids/s", figure("decided_per_s"), ">=", 2000, "bids/s"),
    Target("hot-auction-ws", ">= 3x the synchronous baseline", rate_ratio_to("sync"), ">=", 3, "x"),
    Target("hot-auction-ws-half-rate", "p99 submit -> result <= 50 ms at half the maximum rate",
           figure("latency_ms.submit_to_result.2"), "<=", 50, "ms"),
    Target("hot-auction-rest", ">= 2,000 decided bids/s", figure("decided_per_s"), ">=", 2000, "bids/s"),
    Target("hot-auction-rest", ">= 3x the synchronous baseline", rate_ratio_to("sync"), ">=", 3, "x"),
    Target("many-auctions-ws", ">= 2,000 decided bids/s aggregate", figure("decided_per_s"), ">=", 2000, "bids/s"),
    Target("fanout-*", "delivery p99 <= 500 ms at 5 events/s, lost frames counted as late (issue: at 10,000 "
           "watchers)", figure("p99_missing_as_inf_ms"), "<=", 500, "ms"),
    Target("fanout-*", "<= 30 KB per idle socket", figure("kb_per_socket_max"), "<=", 30, "KB"),
    Target("timers", "p99 lateness of auction.ended <= 250 ms", figure("lateness_ms.at_minus_ends_at.2"), "<=", 250,
           "ms"),
    Target("timers", "none early", figure("lateness_ms.at_minus_ends_at.0"), ">=", 0, "ms min"),
    Target("timers", "none ended twice", figure("ended_twice"), "==", 0, ""),
    Target("reconnect-storm", "5,000 sockets resumed, gap-free", figure("resumed"), ">=", 5000, "sockets"),
    Target("reconnect-storm", "all resumed within 30 s", figure("all_resumed_s"), "<=", 30, "s"),
)


def evaluate_targets(scenarios: list[dict]) -> None:
    by_name = {s["name"]: s for s in scenarios}
    for s in scenarios:
        s["targets"] = [t.evaluate(s, by_name) for t in TARGETS if fnmatch.fnmatchcase(s["name"], t.scenarios)]


# --- one scenario -----------------------------------------------------------------------------


def outcome(sc: Scenario, status: str, detail: str = "", **more) -> dict:
    return {"name": sc.name, "kind": sc.kind, "via": sc.via, "design": sc.design, "half_rate_of": sc.half_rate_of,
            "module": sc.module, "status": status, "detail": detail, "figures": None, **more}


@dataclass
class Child:
    """The scenario process running now, so that Ctrl-C or SIGTERM can stop it."""
    proc: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        log(f"stopping pid {proc.pid} (SIGTERM; SIGKILL after {STOP_GRACE_S:.0f} s)")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def run_child(child: Child, argv: list[str], log_path: Path, prefix: str, timeout_s: float) -> int | None:
    """Run `argv`, its output to our stdout (prefixed) and to `log_path`; its exit code, or None
    when it overran `timeout_s` and was stopped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as logf:
        # Its own session: a Ctrl-C at the terminal reaches us, and we stop it in order.
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                start_new_session=True, preexec_fn=DIE_WITH_PARENT)
        child.proc, child.lines = proc, []

        def pump() -> None:
            for line in proc.stdout:
                try:
                    logf.write(line)
                except ValueError:
                    return  # the log is closed: a process the tool left behind still holds the pipe
                child.lines = (child.lines + [line])[-40:]
                sys.stdout.write(f"  {prefix} | {line}")
                sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        code = None
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log(f"{prefix}: still running after {timeout_s:.0f} s")
        finally:
            child.stop()  # overran, or we were interrupted: it stops while its output is still logged
            reader.join(10)
            child.proc = None
    return code


def run_scenario(sc: Scenario, rundir: Path, child: Child, done: dict[str, dict], base: Path) -> dict:
    if importlib.util.find_spec(sc.module) is None:
        return outcome(sc, "missing", f"no module {sc.module} yet")
    rate = None
    if sc.half_rate_of:
        ref = done.get(sc.half_rate_of) or {}
        top = dig(ref.get("figures"), "decided_per_s")
        if ref.get("status") != "pass" or not top:
            return outcome(sc, "skipped", f"needs a passing {sc.half_rate_of} in the same run for its maximum rate")
        rate = max(1.0, top / 2)
    argv = [*sc.command(rate), "--results", str(rundir)]
    shown = " ".join(["python", *argv[1:]])
    log(f"{sc.name}: {shown} (timeout {sc.timeout_s:.0f} s)")
    before = {p: p.stat().st_mtime_ns for p in rundir.glob("*.json")}
    t0 = time.monotonic()
    code = run_child(child, argv, rundir / f"{sc.name}.log", sc.name, sc.timeout_s)
    more = {"command": shown, "exit_code": code, "seconds": round(time.monotonic() - t0, 1),
            "log": str((rundir / f"{sc.name}.log").relative_to(base))}
    tail = "".join(child.lines[-5:]).strip()
    if code is None:
        return outcome(sc, "timeout", f"stopped after {sc.timeout_s:.0f} s", **more)
    if code == 2 and "unrecognized arguments" in tail:
        # argparse's answer: the tool exists but not with this option yet (e.g. --design).
        return outcome(sc, "missing", f"{sc.module} lacks an option: {tail.splitlines()[-1]}", **more)
    # What it wrote: new files, or one rewritten in the same second under the same name.
    new = sorted(p for p in rundir.glob("*.json") if before.get(p) != p.stat().st_mtime_ns)
    if not new:
        return outcome(sc, "fail", f"exit {code}, no results file; last lines: {tail[-300:]}", **more)
    docs = [(p, json.loads(p.read_text())) for p in new]
    path, doc = next(((p, d) for p, d in docs if d.get("scenario") == sc.name), docs[-1])
    figures = doc.get("figures") or {}
    failed = [name for name, c in (figures.get("checks") or {}).items() if not c.get("ok")]
    more.update(results_file=str(path.relative_to(base)), scenario=doc.get("scenario"))
    if code == 0 and not failed:
        status, detail = "pass", ""
    else:
        status = "fail"
        detail = f"exit {code}" + (f"; failed checks: {', '.join(failed)}" if failed else "")
    result = outcome(sc, status, detail, **more)
    result["figures"] = figures
    return result


# --- the run ----------------------------------------------------------------------------------


def select(scenarios: tuple[Scenario, ...], patterns: list[str]) -> list[Scenario]:
    """The scenarios a pattern names, in table order: a scenario's name picks that one; else an
    fnmatch pattern, or a name's leading words (`hot-auction` picks every hot-auction-*)."""
    if not patterns:
        return list(scenarios)
    names = {s.name for s in scenarios}

    def picks(p: str, name: str) -> bool:
        if p in names:
            return name == p
        return fnmatch.fnmatchcase(name, p) or name.startswith(p + "-")

    return [s for s in scenarios if any(picks(p, s.name) for p in patterns)]


def record_without_plots(run: dict) -> dict:
    """The run for its JSON file: each scenario's plot data is in its own results file."""
    scenarios = [{**s, "figures": {k: v for k, v in s["figures"].items() if k != "plots"}} if s.get("figures")
                 else s for s in run["scenarios"]]
    return {**run, "scenarios": scenarios}


def write_record(run: dict, base: Path, plot_paths: list[Path] = ()) -> tuple[Path, Path]:
    evaluate_targets(run["scenarios"])
    run["ok"] = bool(run["scenarios"]) and all(s["status"] == "pass" for s in run["scenarios"])
    jp, mp = base / f"{run['stamp']}.json", base / f"{run['stamp']}.md"
    jp.write_text(json.dumps(record_without_plots(run), indent=1, default=str) + "\n")
    mp.write_text(report.markdown(run, [str(p.relative_to(base)) for p in plot_paths]))
    return jp, mp


def finish(run: dict, base: Path, docs: bool) -> int:
    """Plots, the final record and, if asked, docs/performance.md; the exit code."""
    plot_dir = base / run["stamp"] / "plots"
    plot_paths = report.render_plots(run, plot_dir)
    jp, mp = write_record(run, base, plot_paths)
    log(f"run record: {jp} and {mp.name}; {len(plot_paths)} plots in {plot_dir}")
    if docs:
        log(f"regenerated {report.write_doc(run, jp, plot_paths).relative_to(ROOT)}")
    for s in run["scenarios"]:
        log(f"  {s['status'].upper():8} {s['name']}" + (f": {s['detail']}" if s["detail"] else ""))
    bad = [s["name"] for s in run["scenarios"] if s["status"] != "pass"]
    log("every scenario passed" if not bad else f"{len(bad)} of {len(run['scenarios'])} did not pass: "
        + ", ".join(bad))
    return 0 if run["ok"] else 1


def new_run(stamp: str, quick: bool) -> dict:
    return {"stamp": stamp, "command": results_mod.command_line(), "quick": quick, "git": results_mod.git_commit(),
            "machine": results_mod.machine(), "seconds": 0.0, "finished": False, "scenarios": []}


def run_all(chosen: list[Scenario], base: Path, quick: bool, docs: bool, child: Child) -> int:
    stamp = results_mod.stamp()
    rundir = base / stamp
    rundir.mkdir(parents=True, exist_ok=True)
    run = new_run(stamp, quick)
    t0 = time.monotonic()
    log(f"{len(chosen)} scenario(s) into {rundir}: {', '.join(s.name for s in chosen)}")
    done: dict[str, dict] = {}
    for i, sc in enumerate(chosen, 1):
        log(f"[{i}/{len(chosen)}] {sc.name}")
        result = run_scenario(sc, rundir, child, done, base)
        done[sc.name] = result
        run["scenarios"].append(result)
        run["seconds"] = round(time.monotonic() - t0, 1)
        log(f"[{i}/{len(chosen)}] {sc.name}: {result['status'].upper()}"
            + (f" ({result['detail']})" if result["detail"] else "")
            + (f" in {result['seconds']:.0f} s" if "seconds" in result else ""))
        write_record(run, base)  # so that a run cut short still leaves its record
    run["finished"] = True
    return finish(run, base, docs)


def merge_runs(paths: list[str], base: Path, docs: bool) -> int:
    """A new run record from saved ones (later files win per scenario), with the plot data read
    back from each scenario's results file: for a full run made in several parts."""
    merged = new_run(results_mod.stamp(), False)
    by_name: dict[str, dict] = {}
    merged["parts"] = []
    for p in map(Path, paths):
        saved = json.loads(p.read_text())
        merged["parts"].append({"record": str(p), "command": saved["command"], "stamp": saved["stamp"],
                                "git": saved["git"]})
        for s in saved["scenarios"]:
            if s.get("results_file") and s.get("figures") is not None:
                full = json.loads((p.parent / s["results_file"]).read_text())
                s = {**s, "figures": full.get("figures") or s["figures"],
                     "results_file": os.path.relpath(p.parent / s["results_file"], base)}
            by_name[s["name"]] = s
        merged["seconds"] += saved.get("seconds") or 0
    order = {s.name: i for i, s in enumerate(SCENARIOS)}
    merged["scenarios"] = sorted(by_name.values(), key=lambda s: order.get(s["name"], len(order)))
    merged["finished"] = True
    (base / merged["stamp"]).mkdir(parents=True, exist_ok=True)
    return finish(merged, base, docs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the one-minute smoke at toy sizes (results in $TMPDIR)")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME",
                   help="run only these scenarios (names, fnmatch patterns, or leading words: hot-auction)")
    p.add_argument("--results", help="base directory (default bench/results/, with --quick "
                                     "$TMPDIR/gavel-bench-quick/)")
    p.add_argument("--no-docs", action="store_true", help="leave docs/performance.md as it is")
    p.add_argument("--list", action="store_true", help="print the scenarios and their commands, run nothing")
    p.add_argument("--from", dest="merge", nargs="+", metavar="RUN_JSON",
                   help="run nothing: merge these run records (later wins per scenario) into a new one, "
                        "with its table, plots and docs/performance.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    table = QUICK if a.quick else SCENARIOS
    chosen = select(table, a.only)
    if a.list:
        for sc in table:
            print(f"{sc.name:26} {' '.join(['python', *sc.command()[1:]])}"
                  + (f" --rate <half of {sc.half_rate_of}'s decided bids/s>" if sc.half_rate_of else "")
                  + f"   (timeout {sc.timeout_s:.0f} s)")
        return 0
    if a.only and not chosen:
        print(f"--only {' '.join(a.only)}: no such scenario; --list shows them", file=sys.stderr)
        return 2
    if a.results:
        base = Path(a.results)
    elif a.quick:
        base = Path(os.environ.get("TMPDIR") or "/tmp") / "gavel-bench-quick"
    else:
        base = results_mod.DEFAULT_DIR
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    # docs/performance.md shows one whole run: not a smoke, not a part (merge the parts with --from).
    docs = not (a.quick or a.only or a.no_docs)
    os.chdir(ROOT)
    if a.merge:
        return merge_runs(a.merge, base, not (a.quick or a.no_docs))
    child = Child()
    return run_guarded(lambda: run_all(chosen, base, a.quick, docs, child), child.stop, log=log, catch_sigint=True)


if __name__ == "__main__":
    sys.exit(main())
