"""`make bench`'s runner and report (bench/run.py, bench/report.py, bench/plots.py) on fake
scenario results: no stack. The targets and Gavel's ratios to the other designs, the tables, the
PNGs, docs/performance.md's hand-written sections, and how the runner reports a scenario that
fails, overruns, or whose tool does not exist yet (and goes on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import plots, report
from bench import run as bench_run
from bench.run import Child, Scenario

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: nothing here touches Redis."""
    yield


def hot(name: str, design: str, decided: float, p99: float, **more) -> dict:
    figures = {"decided_per_s": decided, "latency_ms": {"submit_to_result": [p99 / 4, p99 / 2, p99, 2 * p99]},
               **more}
    return {"name": name, "kind": "hot-auction", "via": "ws", "design": design, "half_rate_of": "",
            "status": "pass", "detail": "", "figures": figures}


def fake_run(*scenarios: dict) -> dict:
    run = {"stamp": "20261126T120000Z", "command": "python -m bench.run", "quick": False, "seconds": 600.0,
           "git": {"commit": "0123456789abcdef", "uncommitted": []},
           "machine": {"nproc": 2, "cpu": "Test CPU", "mem_gib": 4.0, "kernel": "6.1", "python": "3.11.7",
                       "loadavg": ["0.1", "0.2", "0.3"]},
           "scenarios": list(scenarios)}
    bench_run.evaluate_targets(run["scenarios"])
    return run


def three_designs() -> dict:
    return fake_run(hot("hot-auction-ws", "gavel", 2400, 40),
                    hot("hot-auction-ws-sync", "sync", 600, 200),
                    hot("hot-auction-ws-naive", "naive", 300, 400, ordering_violations=17))


def fake_scenario(name: str, *args: str, timeout: float = 60, kind: str = "hot-auction", **more) -> Scenario:
    return Scenario(name, kind, "tests.fake_scenario", ("--name", name, *args), timeout, **more)


# --- the tables -------------------------------------------------------------------------------


def test_every_scenario_name_is_unique_and_every_target_applies_to_one():
    for table in (bench_run.SCENARIOS, bench_run.QUICK):
        names = [s.name for s in table]
        assert len(names) == len(set(names))
    for t in bench_run.TARGETS:
        assert bench_run.select(bench_run.SCENARIOS, [t.scenarios]), t.text


def test_only_takes_names_patterns_and_leading_words():
    pick = bench_run.select
    assert [s.name for s in pick(bench_run.SCENARIOS, ["fanout-*"])] == ["fanout-1000", "fanout-5000", "fanout-10000"]
    assert [s.name for s in pick(bench_run.SCENARIOS, ["many-auctions"])] == [
        "many-auctions-ws", "many-auctions-ws-sync", "many-auctions-ws-naive"]
    assert [s.name for s in pick(bench_run.SCENARIOS, ["timers", "hot-auction-ws"])] == ["hot-auction-ws", "timers"]
    assert pick(bench_run.SCENARIOS, ["nothing-like-it"]) == []


def test_side_by_side_gives_gavels_ratios_to_sync_and_naive_from_the_same_run():
    rows = {r["design"]: r for r in report.side_by_side(three_designs())}
    assert rows["gavel"]["gavel_rate_ratio"] == 1.0
    assert rows["sync"]["gavel_rate_ratio"] == pytest.approx(4.0)
    assert rows["sync"]["gavel_p99_ratio"] == pytest.approx(0.2)
    assert rows["naive"]["gavel_rate_ratio"] == pytest.approx(8.0)
    assert rows["naive"]["gavel_p99_ratio"] == pytest.approx(0.1)
    assert rows["naive"]["ordering_violations"] == 17
    table = report.side_by_side_table(list(rows.values()))
    assert "| hot-auction-ws | naive | pass | 300 | 400 | 17 | 8.00x | 0.10x |" in table


def test_targets_are_checked_against_issue_5s_bounds():
    run = three_designs()
    gavel = {t["text"]: t for t in run["scenarios"][0]["targets"]}
    assert gavel[">= 2,000 decided bids/s"]["met"] is True
    assert gavel[">= 3x the synchronous baseline"]["value"] == pytest.approx(4.0)
    assert gavel[">= 3x the synchronous baseline"]["met"] is True
    assert run["scenarios"][1]["targets"] == []  # the baselines have no targets of their own

    slow = fake_run(hot("hot-auction-ws", "gavel", 35, 5000), hot("hot-auction-ws-sync", "sync", 30, 5000))
    assert [t["met"] for t in slow["scenarios"][0]["targets"]] == [False, False]

    fan = {"name": "fanout-10000", "kind": "fanout", "status": "pass", "detail": "",
           "figures": {"p99_missing_as_inf_ms": float("inf"), "kb_per_socket_max": 24.2}}
    missing = {"name": "timers", "kind": "timers", "status": "missing", "detail": "no module", "figures": None}
    run = fake_run(fan, missing)
    assert [t["met"] for t in run["scenarios"][0]["targets"]] == [False, True]
    assert [t["met"] for t in run["scenarios"][1]["targets"]] == [None, None, None]


def test_the_summary_has_one_row_per_scenario_with_its_targets():
    run = three_designs()
    run["scenarios"].append({"name": "timers", "kind": "timers", "via": "", "design": "", "status": "missing",
                             "detail": "no module bench.timers yet", "figures": None})
    bench_run.evaluate_targets(run["scenarios"])
    md = report.markdown(run, ["20261126T120000Z/plots/hot-auction-ws-cdf.png"])
    rows = [line for line in md.splitlines() if line.startswith("| hot-auction-ws") or line.startswith("| timers")]
    assert len(rows) == 4 + 3  # the summary's four, and the side-by-side's three
    assert "| timers | MISSING (no module bench.timers yet) | - |" in md
    assert "2,400 decided bids/s" in md and "yes (2,400 bids/s)<br>yes (4.0x)" in md
    assert "## Gavel against the alternatives" in md
    assert "![hot-auction-ws-cdf](20261126T120000Z/plots/hot-auction-ws-cdf.png)" in md


# --- the plots --------------------------------------------------------------------------------


def test_plots_are_written_as_non_empty_pngs(tmp_path):
    p = {"cdf": {"submit->result": [0.5, 1.0, 2.0, 40.0, 900.0], "event seen": [3.0, 4.0]},
         "timeline": {"decided bids/s": [[0, 10], [1, 12], [2, 0], [3, 9]]}}
    written = plots.scenario_pngs("hot-auction-ws", p, tmp_path / "plots")
    assert [x.name for x in written] == ["hot-auction-ws-cdf.png", "hot-auction-ws-timeline.png"]
    for png in written:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_a_cdf_leaves_out_what_a_log_axis_cannot_show_and_draws_nothing_from_nothing(tmp_path):
    assert plots.cdf_png("early timers", {"lateness": [-3.0, 0.0]}, tmp_path / "a.png") is None
    assert plots.timeline_png("empty", {"x": []}, tmp_path / "b.png") is None
    assert plots.scenario_pngs("none", {}, tmp_path) == []
    assert plots.cdf_png("mixed", {"lateness": [-3.0, 5.0, 8.0]}, tmp_path / "c.png").exists()


def test_the_designs_of_one_scenario_share_a_cdf(tmp_path):
    run = three_designs()
    for s in run["scenarios"]:
        s["figures"]["plots"] = {"cdf": {"submit->result": [1.0, 2.0, s["figures"]["decided_per_s"] / 10]},
                                 "timeline": {"decided bids/s": [[0, 1], [1, 2]]}}
    names = [p.name for p in report.render_plots(run, tmp_path)]
    assert "hot-auction-ws-designs-cdf.png" in names and "hot-auction-ws-designs-timeline.png" in names
    assert len(names) == 3 * 2 + 2


# --- docs/performance.md ----------------------------------------------------------------------


def test_regenerating_the_doc_keeps_its_hand_written_sections(tmp_path):
    doc = tmp_path / "docs" / "performance.md"
    (tmp_path / "docs" / "performance").mkdir(parents=True)
    (tmp_path / "docs" / "performance" / "stale-cdf.png").write_bytes(b"old")
    doc.write_text("# Performance\n\nold table\n\n<!-- hand-kept: limits -->\n## What limits the figures\n\n"
                   "The bid worker's CPU: 14 ms per bid (py-spy).\n<!-- /hand-kept: limits -->\n")
    png = plots.timeline_png("t", {"x": [[0, 1], [1, 2]]}, tmp_path / "run" / "plots" / "hot-auction-ws-timeline.png")
    report.write_doc(three_designs(), tmp_path / "bench" / "results" / "20261126T120000Z.json", [png], doc)
    text = doc.read_text()
    assert "old table" not in text
    assert "The bid worker's CPU: 14 ms per bid (py-spy)." in text
    assert text.count("<!-- hand-kept: limits -->") == 1
    assert "| hot-auction-ws | PASS |" in text and "make bench" in text and "Test CPU" in text
    assert "![hot-auction-ws-timeline](performance/hot-auction-ws-timeline.png)" in text
    assert sorted(p.name for p in (tmp_path / "docs" / "performance").iterdir()) == ["hot-auction-ws-timeline.png"]
    # A doc without the section gets the placeholder, once.
    doc.write_text("# Performance\n")
    report.write_doc(three_designs(), tmp_path / "r.json", [], doc)
    assert doc.read_text().count("## What limits the figures") == 1


# --- the runner (child processes of tests/fake_scenario.py) -------------------------------------


def test_the_runner_reports_each_failure_and_goes_on(tmp_path, capsys):
    chosen = [
        fake_scenario("hot-auction-ws", "--decided", "2400", "--p99", "40", design="gavel", via="ws"),
        fake_scenario("hot-auction-ws-sync", "--decided", "600", "--p99", "200", "--fail-check", design="sync",
                      via="ws"),
        fake_scenario("hot-auction-ws-naive", "--design", "naive", design="naive", via="ws"),
        fake_scenario("fanout-1000", "--sleep", "30", timeout=1.5, kind="fanout"),
        Scenario("timers", "timers", "bench.no_such_tool", (), 10),
        fake_scenario("hot-auction-ws-half-rate", design="", via="ws", half_rate_of="hot-auction-ws"),
    ]
    code = bench_run.run_all(chosen, tmp_path, quick=False, docs=False, child=Child())
    assert code == 1
    out = capsys.readouterr().out
    assert "hot-auction-ws | fake hot-auction-ws: starting" in out  # the child's progress, prefixed
    stamp = next(tmp_path.glob("*.json")).stem
    record = json.loads((tmp_path / f"{stamp}.json").read_text())
    got = {s["name"]: s for s in record["scenarios"]}
    assert {n: s["status"] for n, s in got.items()} == {
        "hot-auction-ws": "pass", "hot-auction-ws-sync": "fail", "hot-auction-ws-naive": "missing",
        "fanout-1000": "timeout", "timers": "missing", "hot-auction-ws-half-rate": "pass"}
    assert "failed checks: ledger sums to 0" in got["hot-auction-ws-sync"]["detail"]
    assert "--design naive" in got["hot-auction-ws-naive"]["detail"]
    assert got["hot-auction-ws-half-rate"]["figures"]["rate_target"] == 1200.0  # half of 2,400
    assert got["hot-auction-ws"]["figures"]["decided_per_s"] == 2400
    assert "plots" not in got["hot-auction-ws"]["figures"]  # the plot data stays in the scenario's file
    assert (tmp_path / got["hot-auction-ws"]["results_file"]).exists()
    assert (tmp_path / got["fanout-1000"]["log"]).read_text().startswith("fake fanout-1000: starting")
    sync_target = {t["text"]: t for t in got["hot-auction-ws"]["targets"]}[">= 3x the synchronous baseline"]
    assert sync_target["value"] == pytest.approx(4.0)  # a failed run's figures still count as measured
    assert record["ok"] is False and record["finished"] is True
    md = (tmp_path / f"{stamp}.md").read_text()
    assert "| fanout-1000 | TIMEOUT (stopped after 2 s) |" in md
    pngs = sorted(p.name for p in (tmp_path / stamp / "plots").glob("*.png"))
    assert "hot-auction-ws-cdf.png" in pngs and "hot-auction-ws-designs-cdf.png" in pngs


def test_separate_runs_merge_into_one_record(tmp_path):
    first = [fake_scenario("hot-auction-ws", "--decided", "900", design="gavel", via="ws")]
    second = [fake_scenario("hot-auction-ws-sync", "--decided", "300", design="sync", via="ws"),
              fake_scenario("hot-auction-ws", "--decided", "1200", design="gavel", via="ws")]
    assert bench_run.run_all(first, tmp_path / "a", quick=False, docs=False, child=Child()) == 0
    assert bench_run.run_all(second, tmp_path / "b", quick=False, docs=False, child=Child()) == 0
    parts = [str(next((tmp_path / d).glob("*.json"))) for d in ("a", "b")]
    out = tmp_path / "merged"
    out.mkdir()
    assert bench_run.merge_runs(parts, out, docs=False) == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    assert [s["name"] for s in record["scenarios"]] == ["hot-auction-ws", "hot-auction-ws-sync"]
    gavel = record["scenarios"][0]
    assert gavel["figures"]["decided_per_s"] == 1200  # the later run wins
    assert {t["text"]: t["value"] for t in gavel["targets"]}[">= 3x the synchronous baseline"] == pytest.approx(4.0)
    assert any(Path(p).name == "hot-auction-ws-designs-cdf.png" for p in (out).rglob("*.png"))
    assert [p["record"] for p in record["parts"]] == parts
    doc = report.render_doc(record, "merged.json", [])
    assert "merging the runs `" in doc and " UTC to " in doc
