"""Every benchmark script imports and states its usage (the measurements themselves are not tests)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert {p.stem for p in SCRIPTS} >= {"featurize", "models", "train_speed", "matgl_cost", "profile_cost"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_benchmark_prints_its_usage(script):
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "benchmarks/" in out.stdout  # the docstring's command line
