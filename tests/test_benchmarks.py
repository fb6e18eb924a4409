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


def test_the_cost_projection_reads_data_set_sizes_from_published_results():
    from importlib.util import module_from_spec, spec_from_file_location

    import pandas as pd

    from mlib import published
    from mlib.paths import RESULTS_DIR

    spec = spec_from_file_location("profile_cost", Path(__file__).parents[1] / "benchmarks" / "profile_cost.py")
    cost = module_from_spec(spec)
    spec.loader.exec_module(cost)
    summary = pd.read_csv(RESULTS_DIR / "cpu" / "01_data" / "graph_summary.csv").set_index("dataset")
    sizes = cost.data_sizes("paper")  # no paper results: the cpu profile's, and mp.2018.6.1 as published
    assert sizes.loc["aflow", "crystals"] == summary.loc["aflow", "crystals"]
    assert sizes.loc["mp.2018.6.1", "crystals"] == published.MP_2018_DATASET["crystals"]
    table = cost.projection("cpu")
    mp_check = table[(table["notebook"] == "02_train") & (table["model"] == "cgcnn (mp)")].iloc[0]
    p = cost.profile_params("cpu", "02_train")
    crystals = cost.first(summary.loc[p.mp_dataset, "crystals"], p.mp_limit)
    assert mp_check["training crystal-epochs"] == pytest.approx(p.mp_epochs * crystals * cost.TRAIN_FRACTION)
