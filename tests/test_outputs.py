"""Tables, figures and provenance of a notebook run; README tables copied from results; figures with units."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mlib import catalogue, plots, readme
from mlib.outputs import Run, mean_std
from mlib.params import build


@pytest.fixture
def run(tmp_path):
    return Run(build("02_train", {"out_dir": str(tmp_path / "out"), "store_dir": str(tmp_path / "store")}), "02_train")


def test_tables_need_a_caption_and_carry_it(run):
    with pytest.raises(ValueError, match="needs a caption"):
        run.save_table(pd.DataFrame({"a": [1]}), "t", " ", finding="")
    with pytest.raises(TypeError, match="finding"):
        run.save_table(pd.DataFrame({"a": [1]}), "t", "toy, 1 crystal")  # every table says what it shows
    run.save_table(pd.DataFrame({"a": [1.23456]}), "t", "toy, 1 crystal", finding="a is 1.23")
    assert (run.out_dir / "t.md").read_text().startswith("**toy, 1 crystal**")
    assert pd.read_csv(run.out_dir / "t.csv")["a"].iloc[0] == pytest.approx(1.23456)


def test_provenance_names_parameters_code_and_outputs(run):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    run.save_figure(fig, "f", "a line", finding="it rises")
    record = json.loads((run.out_dir / "provenance.json").read_text())
    assert record["notebook"] == "02_train" and record["finished"] is False  # the runner marks it finished
    assert record["parameters"]["epochs"] == 200 and "commit" in record["code"]
    assert {o["file"] for o in record["outputs"]} == {"f.png"} and (run.out_dir / "f.png").stat().st_size > 0
    assert not plt.get_fignums(), "saved figures are closed"


def test_mean_std_over_seeds():
    assert mean_std([1.0, 2.0, 3.0]) == "2 ± 1"
    assert mean_std([0.5]) == "0.5 ± 0"


def test_readme_tables_are_copied_from_results(tmp_path):
    results = tmp_path / "results"
    (results / "cpu" / "02_train").mkdir(parents=True)
    (results / "cpu" / "02_train" / "thermal_metrics.md").write_text("**caption**\n\n| a |\n|--:|\n| 1 |\n")
    text = (
        "intro\n<!-- result: cpu/02_train/thermal_metrics -->\nold table\n<!-- /result -->\n"
        "<!-- result: cpu/99_none/x -->\nkept\n<!-- /result -->\n"
    )
    path = tmp_path / "README.md"
    path.write_text(text)
    assert readme.update(path, results) == ["cpu/02_train/thermal_metrics"]
    out = path.read_text()
    assert "old table" not in out and "| 1 |" in out and "kept" in out


def labels(fig) -> list[str]:
    return [text for ax in fig.axes for text in (ax.get_xlabel(), ax.get_ylabel())]


def test_figures_carry_units_and_display_names():
    thermal = catalogue.target(catalogue.THERMAL_TARGET)
    fig = plots.parity(np.array([1e-5, 2e-5]), np.array([1.1e-5, 1.9e-5]), thermal, "t")
    assert labels(fig) == [
        "true volumetric thermal expansion at 300 K (10^-6 1/K)",
        "predicted volumetric thermal expansion at 300 K (10^-6 1/K)",
    ]
    assert fig.axes[0].get_xlim()[1] < 100  # plotted in 10^-6 1/K, not raw 1e-5 values
    runs = pd.DataFrame({"model": ["gcn", "gcn", "m3gnet"], "target": ["band_gap"] * 3, "mae": [0.4, 0.5, 0.3]})
    fig = plots.metric_bars(runs)
    assert "eV" in fig.axes[0].get_ylabel() and [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "GCN",
        "M3GNet",
    ]
    fig = plots.metric_bars(runs.assign(crystals=[36736, 36736, 4999]))  # a model on a subset says so
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "GCN\n36,736",
        "M3GNet\n4,999",
    ] and "crystals" in fig.axes[0].get_xlabel()
    history = pd.DataFrame(
        {
            "round": [1, 2] * 2,
            "test_mae": [0.3, 0.2, 0.5, 0.4],
            "model": ["gcn"] * 4,
            "target": ["formation_energy_per_atom"] * 2 + ["band_gap"] * 2,
            "algorithm": "fedavg",
        }
    )
    central = pd.DataFrame({"model": ["gcn"], "target": ["band_gap"], "mae (best val MSE)": [0.35]})
    fig = plots.convergence(history, central, "t")
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "test MAE (eV/atom), mean over seeds",
        "test MAE (eV), mean over seeds",
    ]
    assert "central baseline (right of the rounds)" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert [t.get_text() for t in fig.axes[1].texts] == ["GCN"]  # each baseline named beside its marker
    trials = pd.DataFrame(
        {
            "conv_layers": [3, 3, 4],
            "batch_size": [64, 16, 64],
            "hidden": [32, 32, 64],
            "lr": [0.001, 0.1, 0.1],
            "val_mae": [7e-6, 5e-6, 2.3e-5],
            "epochs_run": [10, 200, 95],
        }
    )
    fig = plots.sweep_scatter(trials, list(catalogue.PAPER_GRID), thermal)
    assert [ax.get_xlabel() for ax in fig.axes] == ["conv layers", "batch size", "hidden size", "learning rate"]
    assert fig.axes[0].get_ylabel() == "lowest validation MAE (10^-6 1/K)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["10 (pruned)", "200 (all)", "interrupted"]
    fig = plots.sweep_heatmap(trials, thermal)
    assert fig.axes[0].get_ylabel() == "hidden size" and fig.axes[0].get_xlabel() == "learning rate"
    curves = pd.DataFrame(
        {
            "model": "gcn",
            "source": ["scratch"] * 2 + ["fedavg-band_gap"] * 4,
            "mode": ["scratch"] * 2 + ["frozen", "frozen", "train", "train"],
            "n_train": [50, 100] * 3,
            "mae": [2e-5, 1e-5, 3e-5, 2e-5, 1.8e-5, 0.9e-5],
        }
    )
    fig = plots.transfer_curves(curves, catalogue.THERMAL_TARGET, "t")
    assert fig.axes[0].get_ylabel() == "test MAE (10^-6 1/K)" and fig.axes[0].get_legend() is None  # beside, not over
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "from scratch",
        "FedAvg on band gap, encoder frozen",
        "FedAvg on band gap, encoder trained",
    ]
    assert [line.get_linestyle() for line in legend.get_lines()] == ["-", "--", "-"]
    plt.close("all")


def test_a_finding_is_shown_inline_and_kept_in_provenance(run, monkeypatch):
    from mlib import outputs

    shown = []
    monkeypatch.setattr(outputs, "in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    table = pd.DataFrame({"mae": [3.3e-6] * 12})
    run.save_table(table, "long", "a listing, 12 crystals", markdown=False, finding="MAE 3.3e-6 everywhere")
    html = next(o.data for o in shown if type(o).__name__ == "HTML")
    assert html.count("<td>") == outputs.LISTED_ROWS and "3.3e-06" in html  # the first rows, 4 digits
    texts = [o.data for o in shown if type(o).__name__ == "Markdown"]
    assert texts[0] == "**a listing, 12 crystals**" and "all of them: `long.csv`" in texts[1]
    assert texts[-1] == "**What this shows:** MAE 3.3e-6 everywhere"
    record = json.loads((run.out_dir / "provenance.json").read_text())
    assert record["outputs"][-1] == {
        "file": "long.csv",
        "caption": "a listing, 12 crystals",
        "finding": "MAE 3.3e-6 everywhere",
    }
