"""Flower (`make flower`) runs against the broker: the Makefile's own command, as a real process,
on this test run's Redis."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests import procs


def flower_command(port: int) -> list[str]:
    """The command `make flower` runs (read with make's dry run, so the test runs what operators do)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed here, and the test runs the Makefile's command")
    dry = subprocess.run(["make", "-n", "flower", f"FLOWER_PORT={port}", f"PY={sys.executable}"], cwd=procs.ROOT,
                         capture_output=True, text=True, check=True, timeout=30)
    line = next(line for line in dry.stdout.splitlines() if " flower " in line)
    return shlex.split(line)


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read()


@pytest.fixture
def flower():
    port = procs.free_port()
    # The API answers without a login only when told to (its dashboard is open on loopback).
    proc = procs.Proc("flower", flower_command(port), {**procs._env(), "FLOWER_UNAUTHENTICATED_API": "true"})
    try:
        procs.wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop(timeout=3)  # Flower's own shutdown waits on its inspector threads for many seconds


def test_make_flower_serves_its_dashboard_and_api_on_the_broker(flower):
    status, page = get(flower + "/")
    assert status == 200 and b"Flower" in page
    assert get(flower + "/healthcheck") == (200, b"OK")
    status, queues = get(flower + "/api/queues/length")
    assert status == 200 and "active_queues" in json.loads(queues)


@pytest.mark.slow
def test_flower_sees_the_bid_workers_through_the_broker(stack, flower):
    def workers() -> dict:
        return json.loads(get(flower + "/api/workers?refresh=1")[1])

    seen = procs.wait_for(lambda: {"bids1@test", "bids2@test"} <= set(workers()) and workers(), timeout=30,
                          interval=0.5, what="Flower listing both bid workers")
    assert "default@test" in seen
