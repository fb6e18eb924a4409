"""The measured cost table: sittings logged by the runner, core-hours recorded by the store's runs."""

import json
import time

import pandas as pd
import pytest

from mlib import costs, store


def test_every_sitting_is_logged_with_its_outcome_and_wall_time(tmp_path):
    for outcome in ("interrupted", "failed", "finished"):
        costs.log_sitting(tmp_path / "store", "05_federated", time.time() - 60, outcome)
    table = pd.read_csv(tmp_path / "store" / "05_federated" / costs.SITTINGS)
    assert list(table["outcome"]) == ["interrupted", "failed", "finished"]
    assert (table["seconds"] >= 60).all() and table["started"].str.endswith("Z").all()


def test_the_table_sums_the_runs_seconds_and_the_logged_wall_time(tmp_path):
    root = tmp_path / "cpu"
    for seed, seconds in ((0, 1800.0), (1, 5400.0)):
        store.write_json(
            root / "store" / "04b_models" / "gcn" / "band_gap" / f"seed{seed}" / store.RECORD,
            {"key": {}, "record": {"seconds": seconds}},
        )
    (root / "04b_models").mkdir(parents=True)
    (root / "04b_models" / "provenance.json").write_text(json.dumps({"finished": True, "wall_time_s": 900}))
    costs.log_sitting(root / "store", "04b_models", time.time() - 5400, "interrupted")
    costs.log_sitting(root / "store", "04b_models", time.time() - 1800, "finished")
    table = costs.write(root).set_index("notebook")
    row = table.loc["04b_models"]
    assert row["published"] == "yes" and row["finished runs in the store"] == 2
    assert row["wall hours (publishing sitting)"] == pytest.approx(0.25)
    assert row["core-hours of its runs"] == pytest.approx(2.0)
    assert row["sittings logged"] == 2 and row["wall hours (all logged sittings)"] == pytest.approx(2.0, abs=0.01)
    assert table.loc["05_federated", "published"] == "not yet" and table.loc["05_federated", "sittings logged"] == 0
    assert "cpu profile" in (root / "measured_time.md").read_text()
