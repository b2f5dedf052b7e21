"""The fault suite's bounded run (bench/faults.py --quick), as CI runs it: every fault of issue 6
injected once into the suite's own cluster (private PostgreSQL and Redis, two web nodes, three
bid workers, the default worker and beat) under a load of REST bidders and socket watchers.
Asserts what the suite proves, not how fast it recovered: nothing acknowledged lost, nothing
applied twice, every invariant of auctions.audit, every watcher holding the persisted stream."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.faults import FAULTS
from tests.benchtool import results_of, run_tool

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: the suite runs on a Redis of its own."""
    yield


def _postgres_server_installed() -> bool:
    return shutil.which("initdb") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@pytest.mark.skipif(not _postgres_server_installed(),
                    reason="the fault suite runs a PostgreSQL cluster of its own (initdb); CI's machine has one")
def test_every_fault_loses_nothing_and_doubles_nothing(tmp_path):
    results = tmp_path / "results"
    code, out = run_tool("bench.faults", ["--quick", "--results", str(results)], timeout=900)
    figures = results_of(results, "faults", out)["figures"]
    assert [row["fault"] for row in figures["rows"]] == FAULTS
    for row in figures["rows"]:
        assert row["lost"] == 0 and row["doubled"] == 0, row
        assert row["acknowledged"] > 0, row  # the load ran through every fault
    assert figures["checks"] and all(c["ok"] for c in figures["checks"].values()), figures["checks"]
    assert code == 0, out[-6000:]
