"""The browser client module's own tests (node:test), run as part of the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parent.parent / "realtime" / "static" / "realtime"


def test_the_browser_client_passes_its_node_tests():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is required in CI to test realtime/static/realtime/gavel.js")
        pytest.skip("node is not installed: the browser client's unit tests need Node 18+")
    result = subprocess.run([node, "--test", str(CLIENT_DIR)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
