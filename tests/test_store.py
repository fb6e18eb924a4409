"""The run store, model files and staged notebook results: reuse only on a matching key, atomic writes,
clear errors for other keys, damaged checkpoints and other file formats, nothing half old, half new."""

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from papermill.exceptions import PapermillExecutionError

from mlib import model_file, provenance, reproduce, store
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model
from mlib.params import TrainConfig
from mlib.training import CheckpointError, fit_regressor
from tests.conftest import toy_data


def toy_set(shift: float = 0.0, name: str = "toy") -> GraphSet:
    graphs, y = toy_data()
    table = pd.DataFrame({"id": [f"c{i}" for i in range(len(y))], "y": y.numpy() + shift, "reduced_formula": "NaCl"})
    return GraphSet(name, graphs, table, GraphSpec(), source_digest="toy-source")


def fit(folder, data=None, epochs=2, **kwargs):
    return fit_regressor(
        lambda: build_model("cgcnn", hidden=8, n_conv=2),
        data or toy_set(),
        "y",
        TrainConfig(epochs=epochs, batch_size=4),
        folder,
        show=False,
        **kwargs,
    )


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = store.write_text(tmp_path / "table.csv", "old")

    def broken(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_a_finished_run_is_read_back_only_with_its_key(tmp_path):
    first = fit(tmp_path / "run")
    again = fit(tmp_path / "run")
    assert first.trainer is not None and again.reused
    assert again.metrics == pytest.approx(first.metrics) and again.history.equals(first.history)
    assert list(again.metrics) == list(first.metrics)  # table columns in the same order, trained or read back
    assert [list(m) for m in again.by_criterion.values()] == [list(m) for m in first.by_criterion.values()]
    pd.testing.assert_frame_equal(again.predictions, first.predictions)  # the same tables made or read back
    with pytest.raises(store.RunMismatch, match=r"run holds a run made with another key \(data\.digest"):
        fit(tmp_path / "run", toy_set(shift=1.0))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["record"]["metrics"] == pytest.approx(first.metrics)


def test_resuming_a_checkpoint_of_other_data_is_refused(tmp_path):
    folder = tmp_path / "run"
    fit(folder)
    (folder / "run.json").unlink()  # an interrupted run: checkpoints, no record
    with pytest.raises(store.RunMismatch, match="last.pt holds a run made with another key"):
        fit(folder, toy_set(shift=1.0))


def test_more_epochs_continue_the_same_run(tmp_path):
    short = fit(tmp_path / "run", epochs=2)
    longer = fit(tmp_path / "run", epochs=3)
    assert len(longer.history) == 3 and longer.history.iloc[:2].equals(short.history)


def test_a_damaged_checkpoint_is_named(tmp_path):
    folder = tmp_path / "run"
    fit(folder)
    (folder / "run.json").unlink()
    (folder / "last.pt").write_bytes((folder / "last.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"last.pt cannot be read .* delete it"):
        fit(folder)


def test_another_run_folder_with_the_same_key_is_reused(tmp_path):
    fit(tmp_path / "a")
    assert fit(tmp_path / "b", reuse=[tmp_path / "a"]).folder == tmp_path / "a"
    assert not (tmp_path / "b").exists()


def test_model_file_round_trip_and_format_checks(tmp_path):
    result = fit(tmp_path / "run")
    saved = model_file.load(tmp_path / "run" / "model.pt")
    assert saved.info["name"] == "cgcnn" and saved.info["hyper"]["hidden"] == 8 and saved.info["target"] == "y"
    assert saved.spec == GraphSpec() and saved.info["graph"]["featurizer_version"] >= 1
    assert saved.info["data_digest"] == result.data.data_digest("y")
    torch.save({"name": "cgcnn", "model": {}, "hyper": {}}, tmp_path / "old.pt")
    with pytest.raises(model_file.ModelFileError, match="not an mlib-model file"):
        model_file.load(tmp_path / "old.pt")
    record = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    torch.save({**record, "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(model_file.ModelFileError, match="format version 99"):
        model_file.load(tmp_path / "future.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "run" / "model.pt").read_bytes()[:50])
    with pytest.raises(model_file.ModelFileError, match="damaged"):
        model_file.load(tmp_path / "cut.pt")


def test_data_digest_follows_crystals_and_targets():
    base = toy_set()
    assert base.data_digest("y") == toy_set().data_digest("y")
    assert base.data_digest("y") != toy_set(shift=1e-3).data_digest("y")
    assert base.data_digest("y") != base.subset(np.arange(10)).data_digest("y")


def test_a_failed_notebook_leaves_the_published_results_as_they_were(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("out_dir = 'x'")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [
        cell,
        nbformat.v4.new_code_cell(
            "from pathlib import Path\nPath(out_dir, 'partial.csv').write_text('x')\nraise RuntimeError('boom')"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebooks / "01_data.ipynb")
    results = tmp_path / "results" / "smoke" / "01_data"
    results.mkdir(parents=True)
    (results / "table.csv").write_text("finished results")
    values = {"out_dir": str(reproduce.staging_folder(results))}
    with pytest.raises(PapermillExecutionError, match="boom"):
        reproduce.execute(notebooks / "01_data.ipynb", results, values)
    assert [p.name for p in results.iterdir()] == ["table.csv"] and (
        results / "table.csv"
    ).read_text() == "finished results"
    assert (reproduce.staging_folder(results) / "partial.csv").exists()


def test_publish_swaps_the_staged_results_in(tmp_path):
    results = tmp_path / "smoke" / "01_data"
    results.mkdir(parents=True)
    (results / "old.csv").write_text("old")
    staging = reproduce.staging_folder(results)
    staging.mkdir(parents=True)
    (staging / "provenance.json").write_text(json.dumps({"finished": False, "parameters": {"out_dir": "x"}}))
    executed = nbformat.v4.new_notebook(metadata={"papermill": {"input_path": "/home/me/mlib/notebooks/01_data.ipynb"}})
    lines = [nbformat.v4.new_output("stream", name="stdout", text=f"run {i} of 3 done\n") for i in (1, 2, 3)]
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})
    warning = nbformat.v4.new_output("stream", name="stderr", text="a warning\n")
    executed.cells = [nbformat.v4.new_code_cell("train()", outputs=[*lines, figure, *lines[:2], warning])]
    nbformat.write(executed, staging / "01_data.ipynb")
    reproduce.publish(staging, results, 12.0)
    record = json.loads((results / "provenance.json").read_text())
    assert record["finished"] is True and record["wall_time_s"] == 12.0 and not (results / "old.csv").exists()
    assert provenance.finished(results) and not staging.exists()
    published = nbformat.read(results / "01_data.ipynb", as_version=4)
    outputs = [(o.output_type, o.get("name"), o.get("text")) for o in published.cells[0].outputs]
    assert outputs == [  # a run of progress lines is one output; a figure or another stream ends the run
        ("stream", "stdout", "run 1 of 3 done\nrun 2 of 3 done\nrun 3 of 3 done\n"),
        ("display_data", None, None),
        ("stream", "stdout", "run 1 of 3 done\nrun 2 of 3 done\n"),
        ("stream", "stderr", "a warning\n"),
    ]
    paths = published.metadata["papermill"]
    assert paths["input_path"] == "notebooks/01_data.ipynb"  # not the machine's absolute path
    assert not paths["output_path"].startswith("/") and paths["output_path"].endswith("01_data/01_data.ipynb")


def test_prerequisites_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(reproduce.RunnerError, match="04_embed reads the results of 02_train.*run 02_train first"):
        reproduce.plan("smoke", ["04_embed"], {}, tmp_path)
    assert reproduce.plan("smoke", ["01_data", "02_train", "04_embed"], {}, tmp_path)


def test_the_runner_owns_output_folders_and_profile(tmp_path):
    with pytest.raises(reproduce.RunnerError, match="set by the runner"):
        reproduce.plan("smoke", ["01_data"], {"out_dir": "/tmp/x"}, tmp_path)


def test_the_runner_knows_how_long_a_notebook_took_last_time(tmp_path):
    results = tmp_path / "smoke" / "02_train"
    assert reproduce.expected_seconds(results) is None
    results.mkdir(parents=True)
    (results / "provenance.json").write_text(json.dumps({"finished": True, "wall_time_s": 120.5}))
    assert reproduce.expected_seconds(results) == 120.5


def test_a_model_file_carries_its_atom_features_and_loads_without_atom_init(tmp_path, monkeypatch):
    from mlib.graphs import atom_features

    result = fit(tmp_path / "run")
    assert result.model.hyper["atom_features"] == "reference"

    def unavailable():
        raise AssertionError("loading a model file must not read atom_init.json")

    monkeypatch.setattr(atom_features, "reference_table", unavailable)
    loaded = model_file.load(tmp_path / "run" / "model.pt").model
    assert torch.equal(loaded.embedding.table, result.model.embedding.table) and loaded.embedding.table.any()


def test_early_stopping_ends_a_run_patience_epochs_after_its_best(tmp_path):
    result = fit_regressor(
        lambda: build_model("cgcnn", hidden=8, n_conv=2),
        toy_set(),
        "y",
        TrainConfig(epochs=40, batch_size=4, patience=2),
        tmp_path / "run",
        show=False,
    )
    history = result.history
    best = int(history["val_mae"].idxmin())
    assert len(history) < 40 and len(history) - 1 - best == 2
    assert json.loads((tmp_path / "run" / "run.json").read_text())["key"]["config"]["patience"] == 2


def test_a_run_without_early_stopping_keeps_the_key_it_was_stored_under():
    assert "patience" not in TrainConfig().key() and TrainConfig(patience=5).key()["patience"] == 5


def test_open_says_finished_continue_or_new_and_clears_other_unfinished_state(tmp_path):
    runs, folder, key = store.Store(tmp_path), tmp_path / "run", {"a": 1, "epochs": 2}
    folder.mkdir()
    (folder / "stale.csv").write_text("x")
    opened = runs.open(folder, key, store.load_torch)
    assert (opened.record, opened.checkpoint) == (None, None) and not folder.exists()  # nothing half-made is kept
    store.save_torch(folder / store.CHECKPOINT, {"key": key, "epoch": 1})
    assert runs.open(folder, key, store.load_torch).checkpoint["epoch"] == 1
    with pytest.raises(store.RunMismatch, match="last.pt holds a run made with another key"):
        runs.open(folder, {"a": 2, "epochs": 2}, store.load_torch)
    assert runs.open(folder, key, store.load_torch, resume=False).checkpoint is None and not folder.exists()
    store.save_torch(folder / store.CHECKPOINT, {"key": key, "epoch": 2})
    runs.finish(folder, key, {"mae": 0.5})
    assert runs.open(folder, key, store.load_torch).record == {"mae": 0.5}
    more = {"a": 1, "epochs": 4}  # the same run asked for more epochs continues from its last.pt
    without_epochs = lambda k: {n: v for n, v in k.items() if n != "epochs"}  # noqa: E731
    assert runs.open(folder, more, store.load_torch, comparable=without_epochs).checkpoint["epoch"] == 2
    with pytest.raises(store.RunMismatch, match="holds a run made with another key"):
        runs.open(folder, more, store.load_torch)
    other = tmp_path / "shared"
    runs.finish(other, more, {"mae": 0.4})
    assert runs.open(folder, more, store.load_torch, reuse=[other]) == store.Opened(other, {"mae": 0.4}, None)


def test_every_committed_run_lives_where_store_paths_puts_it():
    """Store paths are built in one module: each finished run of the committed cpu store is at a path one of its
    builders makes (placeholders stand for the arguments)."""
    import inspect
    import re

    from mlib import paths, store_paths

    patterns = []
    for name, builder in inspect.getmembers(store_paths, inspect.isfunction):
        parameters = inspect.signature(builder).parameters
        arguments = [p for p in parameters if p != "store"]
        if name.startswith("_") or name.endswith("_root") or "file" in name or "database" in name:
            continue
        optional = [a for a in arguments if parameters[a].default is None]  # e.g. an ensemble member's split
        for absent in ({}, *({a: None} for a in optional)):
            patterns.append(str(builder("", **({a: f"<{a}>" for a in arguments} | absent))))
    # a group is zero or more folders (the FedProx grid's); every other argument is one folder name
    regexes = [re.compile(re.sub(r"<\w+>", "[^/]+", p.replace("<group>/", "(?:[^/]+/)*")) + "$") for p in patterns]
    root = paths.RESULTS_DIR / "cpu" / "store"
    folders = [str(r.parent.relative_to(root)) for r in root.rglob(store.RECORD)]
    assert len(folders) > 700
    assert [f for f in folders if not any(r.match(f) for r in regexes)] == []
