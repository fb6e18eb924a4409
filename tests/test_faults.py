"""Faults injected as a user would meet them: each gives a clear message or a counted skip, and loses nothing."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psutil
import pytest
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
