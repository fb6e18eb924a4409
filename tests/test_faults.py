"""Faults injected as a user would meet them: each gives a clear message or a counted skip, and loses nothing."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from pymatgen.core import Lattice, Structure

from mlib import provenance, reproduce
from mlib.data import mirror
from mlib.data.errors import ChecksumError
from mlib.graphs.featurize import NoGraphs, featurize
from mlib.graphs.neighbors import GraphSpec
from mlib.params import ParameterError
from mlib.paths import REPO_ROOT
from tests.conftest import needs_mirror


def make_mirror(root, files: dict[str, bytes], listed: set[str] | None = None, sums: bool = True):
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    if sums:
        lines = [
            f"{hashlib.sha256(body).hexdigest()}  ./{name}"
            for name, body in files.items()
            if listed is None or name in listed
        ]
        (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def mirror_at(tmp_path, monkeypatch):
    def use(**kwargs):
        root = make_mirror(tmp_path / f"mirror{len(list(tmp_path.iterdir()))}", **kwargs)
        monkeypatch.setenv("MLIB_DATA_MIRROR", str(root))
        return root

    return use


RECORDS = b'{"auid": "aflow:1", "agl_thermal_expansion_300K": 0.000144}\n'


def test_a_mirror_without_a_digest_list_is_refused(mirror_at):
    mirror_at(files={"aflow-agl/records.jsonl": RECORDS}, sums=False)
    with pytest.raises(ChecksumError, match=r"SHA256SUMS does not exist.*MLIB_MIRROR_UNVERIFIED=1"):
        mirror.mirror_file("aflow-agl/records.jsonl")


def test_a_file_missing_from_the_digest_list_is_refused(mirror_at):
    mirror_at(files={"a.txt": b"a", "aflow-agl/records.jsonl": RECORDS}, listed={"a.txt"})
    assert mirror.mirror_file("a.txt").read_bytes() == b"a"
    with pytest.raises(ChecksumError, match="aflow-agl/records.jsonl is not listed in"):
        mirror.mirror_file("aflow-agl/records.jsonl")


def test_a_changed_target_is_caught_by_its_digest(mirror_at):
    root = mirror_at(files={"aflow-agl/records.jsonl": RECORDS})
    (root / "aflow-agl/records.jsonl").write_bytes(RECORDS.replace(b"0.000144", b"9.000144"))
    with pytest.raises(ChecksumError, match="does not match SHA256SUMS.*damaged"):
        mirror.mirror_file("aflow-agl/records.jsonl")


def test_opting_out_is_recorded_in_provenance(mirror_at, monkeypatch):
    mirror_at(files={"mine.csv": b"x"}, sums=False)
    monkeypatch.setenv("MLIB_MIRROR_UNVERIFIED", "1")
    mirror.mirror_file("mine.csv")
    assert provenance.data_files()["$MLIB_DATA_MIRROR/mine.csv"].endswith("(unverified)")


def salts(n: int = 6) -> pd.DataFrame:
    rows = []
    for k in range(n):
        s = Structure(Lattice.cubic(3.0 + 0.1 * k), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        rows.append({"id": f"c{k}", "source": s.to(fmt="cif"), "y": float(k)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip", "delete table"])
def test_a_damaged_graph_cache_is_rebuilt_with_a_warning(damage, caplog):
    first = featurize(salts(), "salts", GraphSpec())
    folder = next(p for p in (provenance.Path(os.environ["MLIB_CACHE"]) / "graphs").iterdir())
    graphs = folder / "graphs.bin"
    body = graphs.read_bytes()
    if damage == "truncate":
        graphs.write_bytes(body[: len(body) // 2])
    elif damage == "empty":
        graphs.write_bytes(b"")
    elif damage == "flip":
        graphs.write_bytes(body[:-20] + bytes([body[-20] ^ 0xFF]) + body[-19:])
    else:
        (folder / "table.parquet").unlink()
    again = featurize(salts(), "salts", GraphSpec())
    assert [r.getMessage() for r in caplog.records] == [
        f"graph cache {folder} is damaged ({reason(damage)}); rebuilding it"
    ]
    assert len(again) == len(first) and not again.from_cache
    caplog.clear()
    assert featurize(salts(), "salts", GraphSpec()).from_cache and not caplog.records  # rebuilt, verified, quiet


def reason(damage: str) -> str:
    return "missing table.parquet" if damage == "delete table" else "its files do not match cache.sha256"


def test_no_crystal_at_all_is_an_error_naming_the_data_set_and_the_skips():
    frame = salts(3).assign(source="not a CIF")
    with pytest.raises(NoGraphs, match=r"none of the 3 crystals of broken could become a graph \(3 unparsable CIF\)"):
        featurize(frame, "broken", GraphSpec())


@pytest.mark.parametrize("override", [{"radius": float("inf")}, {"radius": float("nan")}, {"lr": float("inf")}])
def test_non_finite_values_are_refused_before_anything_runs(tmp_path, override):
    with pytest.raises(ParameterError, match="finite"):
        reproduce.plan("smoke", ["01_data", "02_train"], override, tmp_path)


def site_csv(tmp_path) -> tuple:
    """14 crystals: 10 good, one broken CIF, one NaN target, one element without features (Md), one lone atom."""
    rows = []
    for k in range(10):
        s = Structure(Lattice.cubic(3.0 + 0.1 * k), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        rows.append({"id": f"ok{k}", "cif": s.to(fmt="cif"), "y": float(k)})
    rows.append({"id": "broken", "cif": "data_x\n_cell_length_a 3\n", "y": 1.0})
    rows.append({"id": "no-target", "cif": rows[0]["cif"], "y": float("nan")})
    md = Structure(Lattice.cubic(3.5), ["Md", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rows.append({"id": "mendelevium", "cif": md.to(fmt="cif"), "y": 1.0})
    lone = Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]])
    rows.append({"id": "lonely", "cif": lone.to(fmt="cif"), "y": 1.0})
    path = tmp_path / "site.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, len(rows)


def test_a_site_says_what_it_uses_and_lists_what_it_skipped(tmp_path, capsys):
    from mlib.federated import task

    path, total = site_csv(tmp_path)
    node = task.with_defaults({"data": str(path), "target": "y"}, task.NODE_CONFIG)
    graph_set, rows = task.site_graphs(node)
    line = capsys.readouterr().out
    assert len(rows) == 10 and f"uses 10 of {total} crystals; skipped 4" in line and "site.skipped.csv" in line
    skipped = pd.read_csv(tmp_path / "site.skipped.csv")
    assert set(skipped["id"]) == {"broken", "no-target", "mendelevium", "lonely"}
    assert set(skipped["kind"]) == {
        "unparsable CIF",
        "no y",
        "element without features",
        "atom without neighbours",
    }


def test_a_site_csv_without_the_target_column_is_named(tmp_path):
    from mlib.federated import task

    path, _ = site_csv(tmp_path)
    node = task.with_defaults({"data": str(path), "target": "band_gap"}, task.NODE_CONFIG)
    with pytest.raises(task.SiteDataError, match=r"missing column\(s\) \['band_gap'\]"):
        task.site_graphs(node)


@pytest.mark.slow
@needs_mirror
@pytest.mark.timeout(300)
def test_stopping_a_run_ends_every_child_and_says_where_to_resume(tmp_path):
    env = dict(os.environ, MLIB_CACHE=str(tmp_path / "cache"))
    runner = subprocess.Popen(
        [sys.executable, "-m", "mlib.reproduce", "--profile", "smoke", "--only", "01", "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    children: list[psutil.Process] = []
    deadline = time.time() + 120
    while time.time() < deadline and len(children) < 3:  # the kernel and its featurisation workers
        time.sleep(0.5)
        children = psutil.Process(runner.pid).children(recursive=True)
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 130
    interrupted = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(interrupted) == 1 and "rerun the same command to resume" in interrupted[0]
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [p.cmdline()[:3] for p in alive]
    assert not (tmp_path / "out" / "smoke" / "01_data").exists()
    sittings = pd.read_csv(tmp_path / "out" / "smoke" / "store" / "01_data" / "sittings.csv")
    assert list(sittings["outcome"]) == ["interrupted"] and sittings["seconds"].iloc[0] >= 0  # its time is kept


def test_a_run_on_changed_data_is_announced(tmp_path, mirror_at):
    root = mirror_at(files={"aflow-agl/records.jsonl": RECORDS})
    results = tmp_path / "results" / "01_data"
    results.mkdir(parents=True)
    old = hashlib.sha256(b"older records").hexdigest()
    (results / "provenance.json").write_text(
        json.dumps({"data_files": {"$MLIB_DATA_MIRROR/aflow-agl/records.jsonl": old}})
    )
    assert reproduce.changed_data(results) == ["aflow-agl/records.jsonl"]
    (results / "provenance.json").write_text(
        json.dumps(
            {
                "data_files": {
                    "$MLIB_DATA_MIRROR/aflow-agl/records.jsonl": hashlib.sha256(
                        (root / "aflow-agl/records.jsonl").read_bytes()
                    ).hexdigest()
                }
            }
        )
    )
    assert reproduce.changed_data(results) == []


def test_a_failing_notebook_keeps_the_other_notebooks_results_and_finished_runs(tmp_path):
    """The runner stops at the failing notebook; what earlier notebooks and finished runs wrote stays as it was."""
    from tests.test_store import fit

    finished = fit(tmp_path / "results" / "smoke" / "store" / "02_train" / "thermal" / "toy")
    before = (finished.folder / "run.json").read_bytes()
    other = tmp_path / "results" / "smoke" / "01_data"
    other.mkdir(parents=True)
    (other / "provenance.json").write_text(json.dumps({"finished": True}))
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("out_dir = 'x'")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("raise ValueError('bad input')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebooks / "02_train.ipynb")
    from papermill.exceptions import PapermillExecutionError

    results = tmp_path / "results" / "smoke" / "02_train"
    with pytest.raises(PapermillExecutionError):
        reproduce.execute(notebooks / "02_train.ipynb", results, {"out_dir": str(reproduce.staging_folder(results))})
    assert (finished.folder / "run.json").read_bytes() == before
    assert json.loads((other / "provenance.json").read_text()) == {"finished": True}
    assert not results.exists()
    np.testing.assert_array_equal(fit(finished.folder).history["val_mse"], finished.history["val_mse"])


def _build_salts(_: int) -> int:
    return len(featurize(salts(40), "salts", GraphSpec()))


def test_processes_building_one_graph_cache_entry_at_once_all_succeed():
    """Sweep workers started together featurise the same crystals at once: each file of the cache entry is
    written atomically under a name of its own, so none fails and the entry is complete and verified."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_build_salts, range(3)) == [40, 40, 40]
    folder = next((provenance.Path(os.environ["MLIB_CACHE"]) / "graphs").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["cache.sha256", "graphs.bin", "skips.csv", "table.parquet"]
    assert featurize(salts(40), "salts", GraphSpec()).from_cache


# --- hostile and careless input (one test per kind of input) ---


class _CreatesAFile:
    """Unpickling this calls open(path, "w"): a pickle that runs code when loaded."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_model_file_or_checkpoint_that_would_run_code_is_refused_through_every_public_path(tmp_path, capsys):
    import torch

    from mlib import model_file, predict
    from mlib.training import CheckpointError
    from tests.test_store import fit

    marker = tmp_path / "created-by-the-pickle"
    fit(tmp_path / "run")
    record = model_file.read(tmp_path / "run" / "model.pt")
    torch.save({**record, "details": {"note": _CreatesAFile(marker)}}, tmp_path / "evil.pt")
    (tmp_path / "nacl.cif").write_text(Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0] * 3, [0.5] * 3]).to(fmt="cif"))
    refused = r"evil.pt was refused: .* asks to load the Python object io.open, which could run code"
    with pytest.raises(model_file.ModelFileError, match=refused):
        model_file.load(tmp_path / "evil.pt")  # also how Flower's global model and 06's encoders are read
    with pytest.raises(model_file.ModelFileError, match=refused):
        predict.predict([tmp_path / "nacl.cif"], tmp_path / "evil.pt")
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": ["evil.pt"], "spread_scale": 1.0}))
    with pytest.raises(model_file.ModelFileError, match=refused):
        predict.predict([tmp_path / "nacl.cif"], tmp_path / "ensemble.json")
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path / "nacl.cif"), "--model", str(tmp_path / "evil.pt")])
    assert exit_info.value.code == 2 and "io.open" in capsys.readouterr().err
    (tmp_path / "run" / "run.json").unlink()  # an interrupted run, to be resumed from its last.pt
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    torch.save({**checkpoint, "history": [_CreatesAFile(marker)]}, tmp_path / "run" / "last.pt")
    with pytest.raises(CheckpointError, match=r"last.pt was refused: .* io.open"):
        fit(tmp_path / "run")
    assert not marker.exists()


def test_every_input_file_is_read_on_its_own_and_a_bad_one_loses_nothing(tmp_path, capsys):
    from mlib import predict
    from tests.test_store import fit

    fit(tmp_path / "run")
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    (cifs / "nacl.cif").write_text(Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0] * 3, [0.5] * 3]).to(fmt="cif"))
    (cifs / "KCL.CIF").write_text(Structure(Lattice.cubic(6.3), ["K", "Cl"], [[0] * 3, [0.5] * 3]).to(fmt="cif"))
    (cifs / "empty.cif").write_text("")
    (cifs / "random.cif").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "header.csv").write_text("id,cif\n")
    (tmp_path / "quote.csv").write_text('id,cif\n"a,unterminated\n')
    inputs = [cifs, tmp_path / "binary.csv", tmp_path / "header.csv", tmp_path / "quote.csv", tmp_path / "gone.cif"]
    table = predict.predict(inputs, tmp_path / "run" / "model.pt").set_index("id")
    assert set(table.index[table["status"] == "ok"]) == {str(cifs / "nacl.cif"), str(cifs / "KCL.CIF")}
    reasons = table["reason"]
    assert reasons[str(cifs / "empty.cif")] == "empty file"
    assert reasons[str(cifs / "random.cif")] == "not a text file (binary data), so not a CIF"
    assert reasons[str(tmp_path / "binary.csv")] == "not a text file (binary data), so not a CSV"
    assert reasons[str(tmp_path / "header.csv")] == "has a header row but no crystals"
    assert reasons[str(tmp_path / "quote.csv")].startswith("cannot be read as a CSV (")
    assert reasons[str(tmp_path / "gone.cif")] == "does not exist"
    assert predict.main([str(p) for p in inputs] + ["--model", str(tmp_path / "run" / "model.pt")]) == 0
    out, err = capsys.readouterr()
    assert "6 of 8 crystals could not be predicted" in err and "Traceback" not in err
    assert predict.main([str(tmp_path / "header.csv"), "--model", str(tmp_path / "run" / "model.pt")]) == 1


def test_thermal_predictions_print_in_the_display_unit_with_four_digits():
    from mlib import predict

    table = pd.DataFrame(
        {"id": ["a"], "formula": ["NaCl"], "prediction": [8.3456e-5], "unit": ["1/K"], "spread": [3.61e-6]}
    ).assign(domain_percentile=41.0, out_of_domain=False, status="ok", reason="", target="thermal_expansion")
    text = predict.shown(table).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    assert "prediction (10^-6 1/K)" in text and "83.46" in text and "3.61" in text and "41" in text


def as_dict(structure: Structure) -> dict:
    """A structure as a data set's lattice/species/coords record (what AFLOW records become)."""
    return {
        "lattice": structure.lattice.matrix.tolist(),
        "species": [site.specie.symbol for site in structure],
        "frac_coords": structure.frac_coords.tolist(),
    }


def cubic_pair(a: float) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.mark.parametrize(
    "structure, kind, message",
    [
        (cubic_pair(1.0), "cell volume", r"cell volume 1 A\^3 for 2 atoms \(0.5 A\^3 per atom, under 1.0"),
        (cubic_pair(0.1), "atoms too close", r"atoms 0.0866 A apart \(under 0.5 A"),
        (Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0]]), "atoms too close", "atoms 0 A apart"),
        (Structure(Lattice.cubic(5.6), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0] * 3, [0.5] * 3]), "partial occupancy", ""),
    ],
    ids=["1 A cell", "0.1 A cell", "two atoms on one spot", "partial occupancy"],
)
def test_implausible_geometry_is_a_counted_skip_for_training_sites_and_predictions(structure, kind, message):
    from mlib.graphs.neighbors import featurize_one

    source = structure.to(fmt="cif") if kind != "atoms too close" else as_dict(structure)  # CIF readers merge
    _, (got_kind, detail) = featurize_one(("x", source), GraphSpec(), 100)
    assert got_kind == kind and re.search(message, detail)
    frame = pd.concat([salts(2), pd.DataFrame([{"id": "bad", "source": source, "y": 1.0}])])
    graph_set = featurize(frame, "mixed", GraphSpec())
    assert len(graph_set) == 2 and graph_set.skips.table()[["id", "kind"]].values.tolist() == [["bad", kind]]


def test_a_cell_of_zero_volume_is_named_as_such():
    from mlib.graphs.neighbors import NeighborError, to_structure

    flat = cubic_pair(5.6).to(fmt="cif").replace("_cell_length_c   5.60000000", "_cell_length_c   0.0")
    with pytest.raises(NeighborError, match=r"cell volume 0 A\^3 \(from the CIF's cell\): a degenerate cell"):
        to_structure(flat)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_tiny_cell_is_refused_promptly_under_a_memory_limit(tmp_path):
    """A 0.03 A cell once grew to 4 GB building its neighbour list; under a 1.5 GiB address-space limit it is
    refused within seconds."""
    (tmp_path / "tiny.cif").write_text(cubic_pair(0.03).to(fmt="cif"))
    script = (
        "import resource, sys, time\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))\n"
        "from mlib.graphs.neighbors import GraphSpec, featurize_one\n"
        "start = time.time()\n"
        "_, result = featurize_one(('tiny', open(sys.argv[1]).read()), GraphSpec(), 100)\n"
        "print(result[0], '|', result[1], '|', round(time.time() - start, 1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "tiny.cif")], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, detail, seconds = (part.strip() for part in done.stdout.split("|"))
    assert kind == "atoms too close" and detail.startswith("atoms 0.026 A apart") and float(seconds) < 10


def test_the_study_crystals_lie_far_inside_the_geometry_limits():
    from mlib import catalogue

    assert catalogue.MIN_DISTANCE < 0.74 and catalogue.MIN_VOLUME_PER_ATOM < 4.8 and catalogue.MAX_PAIRS > 46_500


@pytest.mark.slow
@needs_mirror
def test_two_sweep_workers_on_different_data_never_share_a_study(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    space = '{"conv_layers": [1], "batch_size": [8], "hidden": [4], "lr": [0.01]}'
    run = [sys.executable, "-m", "mlib.sweep", "--storage", url, "--study", "mine", "--epochs", "1", "--space", space]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run([*run, "--limit", "40"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([*run, "--limit", "80"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 2
    assert "'mine'" in second.stderr and "data.crystals: 40 -> 80" in second.stderr and "other inputs" in second.stderr
    study = optuna.load_study(study_name="mine", storage=url)
    assert len(study.trials) == 1 and study.user_attrs["inputs"]["data"]["crystals"] == 40


def publish_fake(root, notebook: str, parameters: dict) -> None:
    """Publish a notebook's results folder as the runner does, with only a provenance.json."""
    staging = reproduce.staging_folder(root / notebook)
    staging.mkdir(parents=True)
    (staging / "provenance.json").write_text(json.dumps({"notebook": notebook, "parameters": parameters}))
    reproduce.publish(staging, root / notebook, 1.0)


def test_a_changed_parameter_never_leaves_one_results_folder_mixed(tmp_path, capsys):
    from mlib import params as P
    from mlib import profiles

    root = tmp_path / "smoke"
    for nb in ("01_data", "02_train", "04_embed"):
        values = {**profiles.notebook_params("smoke", nb), "out_dir": "x", "store_dir": "y"}
        publish_fake(root, nb, P.build(nb, values).as_dict())
    assert reproduce.plan("smoke", ["01_data"], {}, tmp_path)  # the same inputs: nothing goes stale
    with pytest.raises(reproduce.RunnerError, match=r"republishes 01_data with other inputs.*02_train, 04_embed in"):
        reproduce.plan("smoke", ["01_data"], {"radius": 7.0}, tmp_path)
    assert reproduce.plan("smoke", ["01_data", "02_train", "04_embed"], {"radius": 7.0}, tmp_path)
    (nb01, _, values) = reproduce.plan("smoke", ["01_data"], {"radius": 7.0}, tmp_path, force=True)[0]
    publish_fake(root, "01_data", P.build("01_data", values).as_dict())  # as --force would republish it
    assert set(provenance.stale(root, reproduce.catalogue.NOTEBOOKS)) == {"02_train", "04_embed"}
    with pytest.raises(reproduce.RunnerError, match="04_embed reads the results of 02_train, which are stale"):
        reproduce.plan("smoke", ["04_embed"], {}, tmp_path)
    reproduce.report_stale(root)
    assert f"stale: {root / '02_train'} was made from results of 01_data" in capsys.readouterr().err


def test_run_store_messages_name_absolute_paths(tmp_path, monkeypatch):
    from mlib import store
    from tests.test_store import fit, toy_set

    fit(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(store.RunMismatch, match=re.escape(str((tmp_path / "run").resolve()))):
        fit(provenance.Path("run"), toy_set(shift=1.0))


def test_a_site_csv_with_bad_rows_counts_them_and_a_broken_file_is_refused_in_one_line(tmp_path, capsys):
    from mlib.federated import task

    path, total = site_csv(tmp_path)
    frame = pd.read_csv(path)
    mixed = Structure(Lattice.cubic(5.6), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0] * 3, [0.5] * 3]).to(fmt="cif")
    extra = pd.DataFrame([{"id": "letters", "cif": frame["cif"][0], "y": "abc"}, {"id": "mixed", "cif": mixed, "y": 1}])
    pd.concat([frame, extra]).to_csv(path, index=False)
    graph_set, rows = task.site_graphs(task.with_defaults({"data": str(path), "target": "y"}, task.NODE_CONFIG))
    assert len(rows) == 10 and f"uses 10 of {total + 2} crystals; skipped 6" in capsys.readouterr().out
    skipped = pd.read_csv(tmp_path / "site.skipped.csv").set_index("id")
    assert skipped.loc["letters", "reason"] == "y 'abc' is not a number"
    assert skipped.loc["mixed", "kind"] == "partial occupancy"
    path.write_text(path.read_text() + '"never closed,x,1\n')
    with pytest.raises(task.SiteDataError, match=r"site data .*site.csv cannot be read as a CSV \(.*\); no crystal"):
        task.site_graphs(task.with_defaults({"data": str(path), "target": "y"}, task.NODE_CONFIG))


def test_a_graph_cache_entry_without_its_digest_is_rebuilt_never_signed(caplog):
    first = featurize(salts(), "salts", GraphSpec())
    folder = next((provenance.Path(os.environ["MLIB_CACHE"]) / "graphs").iterdir())
    (folder / "cache.sha256").unlink()
    body = (folder / "graphs.bin").read_bytes()
    (folder / "graphs.bin").write_bytes(body[:-20] + bytes([body[-20] ^ 0xFF]) + body[-19:])
    again = featurize(salts(), "salts", GraphSpec())
    assert not again.from_cache and "missing cache.sha256" in caplog.records[0].getMessage()
    for old, new in zip(first.graphs, again.graphs):
        assert torch.equal(old.edata["dist"], new.edata["dist"])
    assert featurize(salts(), "salts", GraphSpec()).from_cache


@pytest.mark.parametrize("text, value", [("1e-3", 0.001), ("-2.5E+2", -250.0), ("[1e-3, 2]", [0.001, 2]), ("3", 3)])
def test_numbers_on_the_command_line_read_as_yaml_1_2(text, value):
    assert reproduce.parse_overrides([f"lr={text}"]) == {"lr": value}


def test_a_radius_below_the_shortest_interatomic_distance_is_refused(tmp_path):
    with pytest.raises(ParameterError, match=r"radius must be > 0.5 A, got 1e-09"):
        reproduce.plan("smoke", ["01_data"], reproduce.parse_overrides(["radius=1e-9"]), tmp_path)


def test_known_compounds_match_aflow_entries_by_structure_not_formula_and_space_group():
    from mlib.data.thermal import dropped_duplicates, structure_matches

    rock_salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0] * 3, [0.5] * 3])
    before = pd.DataFrame(
        {
            "id": ["cscl-type", "rock-salt", "rock-salt-again"],
            "spacegroup": [225, 225, 225],  # as a careless key would see them: one compound
            "reduced_formula": ["NaCl"] * 3,
            "thermal_expansion": [1e-4, 2e-4, 3e-4],
            "source": [cubic_pair(3.0), rock_salt, rock_salt.copy().scale_lattice(rock_salt.volume * 1.05)],
        }
    )
    textbook = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3])
    assert list(structure_matches(textbook.to(fmt="cif"), before)["id"]) == ["rock-salt", "rock-salt-again"]
    dropped = dropped_duplicates(before).set_index("dropped")
    assert dropped["kept"].tolist() == ["cscl-type"] * 2 and not dropped["same structure"].any()
    from mlib.catalogue import target
    from mlib.study.nb02_train import _aflow_match

    match = _aflow_match(textbook.to(fmt="cif"), before, {"cscl-type"}, {}, target("thermal_expansion"))
    assert match["AFLOW entry (same structure)"] == "rock-salt" and match["AFLOW label (10^-6 1/K)"] == pytest.approx(
        200
    )
    assert (
        match["note"]
        == "not in the data set: the paper's dedup kept cscl-type (space group 225, another structure of NaCl)"
    )
