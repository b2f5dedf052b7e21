"""A stand-in scenario tool for bench/run.py's tests: the same command-line conventions as the
real ones (`--results DIR`, `<stamp>-<scenario>.json/.md` via bench/results.write, exit 0 only
when its checks hold), no stack, and figures given on the command line.

    python -m tests.fake_scenario --name hot-auction-ws --decided 2400 --p99 40 --results DIR
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import plotdata, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tests.fake_scenario")
    p.add_argument("--name", required=True, help="the scenario name it writes its results under")
    p.add_argument("--decided", type=float, default=100.0, help="decided bids/s")
    p.add_argument("--p99", type=float, default=10.0, help="p99 submit -> result, ms")
    p.add_argument("--violations", type=int, help="ordering violations (the naive design reports them)")
    p.add_argument("--fail-check", action="store_true", help="one check fails (results written, exit 1)")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep before anything (timeouts)")
    p.add_argument("--rate", type=float, help="open loop rate: recorded as rate_target")
    p.add_argument("--results")
    a = p.parse_args(argv)
    print(f"fake {a.name}: starting", flush=True)
    time.sleep(a.sleep)
    figures = {
        "decided_per_s": a.decided,
        "rate_target": a.rate,
        "latency_ms": {"submit_to_result": [a.p99 / 4, a.p99 / 2, a.p99, a.p99 * 2],
                       "submit_to_event_seen": [1.0, 2.0, 3.0, 4.0], "quantiles": [50, 95, 99, 100]},
        "checks": {"stream gap-free": {"ok": True, "detail": ""},
                   "ledger sums to 0": {"ok": not a.fail_check, "detail": "sum 3" if a.fail_check else "sum 0"}},
        "plots": {"cdf": {"submit->result": plotdata.cdf([a.p99 * (i + 1) / 50 for i in range(50)])},
                  "timeline": {"decided bids/s": [[t, a.decided] for t in range(5)]}},
    }
    if a.violations is not None:
        figures["ordering_violations"] = a.violations
    results.write(a.name, figures, results.md_table([("decided bids/s", a.decided)]), a.results)
    print(f"fake {a.name}: done", flush=True)
    return 1 if a.fail_check else 0


if __name__ == "__main__":
    sys.exit(main())
