"""Federated training: partitions, aggregation, FedProx, faults, and Flower against the in-process engine."""

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Element, Lattice, Structure

from mlib.federated.aggregate import batchnorm_keys, finite, weighted_average
from mlib.federated.client import client_data, local_update, pooled_scaler
from mlib.federated.partition import PartitionError, anion_elements, partition
from mlib.federated.simulation import Federation, FederationError
from mlib.graphs.featurize import GraphSet, featurize
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model, graph_spec
from mlib.params import FedConfig, ParameterError, build
from mlib.training import seed_everything, split_indices

CATIONS = ["Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr"]
ANIONS = ["F", "Cl", "Br", "I", "O", "S"]


def salts():
    """48 CsCl-type binaries; the target is a smooth function of the composition and lattice constant."""
    rows = []
    for i, a in enumerate(CATIONS):
        for j, b in enumerate(ANIONS):
            lattice = 3.0 + 0.12 * i + 0.1 * j
            s = Structure(Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
            rows.append(
                {
                    "id": f"{a}{b}",
                    "source": {"lattice": s.lattice.matrix, "species": [a, b], "frac_coords": s.frac_coords},
                    "formula": s.composition.reduced_formula,
                    "y": np.sin(i) + 0.5 * j - 0.3 * lattice,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def graph_set():
    return featurize(salts(), "salts", graph_spec("gcn"), cache=False)


def gcn_federation(graph_set, config: FedConfig) -> Federation:
    """A small GCN federated over the iid shards of ``setup``."""
    split, y, shards = setup(graph_set)
    return Federation(lambda: build_model("gcn", hidden=16), graph_set.graphs, y, split, shards, config)


def setup(graph_set, clients=3, scheme="iid"):
    split = split_indices(len(graph_set), 0, (0.8, 0.1, 0.1))
    y = graph_set.target("y")
    shards = partition(
        split["train"],
        clients,
        scheme,
        0,
        chemistry=anion_elements(graph_set.table["formula"]),
        target=y.numpy(),
        alpha=0.3,
    )
    return split, y, shards


@pytest.mark.parametrize("scheme", ["iid", "chemistry", "dirichlet"])
def test_partitions_are_disjoint_and_complete(graph_set, scheme):
    split, _, shards = setup(graph_set, 4, scheme)
    joined = np.concatenate(shards)
    assert sorted(joined) == sorted(split["train"]) and len(set(joined)) == len(joined)


def test_chemistry_partition_gives_clients_disjoint_anions(graph_set):
    _, _, shards = setup(graph_set, 3, "chemistry")
    anions = anion_elements(graph_set.table["formula"])
    owned = [set(anions[s]) for s in shards]
    assert all(not (owned[a] & owned[b]) for a in range(3) for b in range(a + 1, 3))
    assert anion_elements(pd.Series(["Fe2O3", "NaCl", "MgAl2"])).tolist() == ["O", "Cl", "Al"]


def test_noble_gas_compounds_rank_quietly_below_their_partners():
    vars(Element.He).pop("X", None)  # pymatgen caches X: clear it so the warning would fire again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anions = anion_elements(pd.Series(["Na2He", "He"])).tolist()
    assert anions == ["Na", "He"]
    assert not [w for w in caught if "Pauling" in str(w.message)]


def test_dirichlet_skews_the_target_more_than_iid():
    y = np.random.default_rng(0).normal(size=1000)
    rows = np.arange(len(y))
    spread = {}
    for scheme in ("iid", "dirichlet"):
        means = [
            [y[s].mean() for s in partition(rows, 4, scheme, seed, target=y, alpha=0.1) if len(s)] for seed in range(5)
        ]
        spread[scheme] = np.mean([np.std(m) for m in means])
    assert spread["dirichlet"] > 5 * spread["iid"]


def test_partition_errors_name_the_problem():
    with pytest.raises(PartitionError, match="unknown partition 'random'"):
        partition(np.arange(10), 2, "random")
    with pytest.raises(PartitionError, match="needs the target"):
        partition(np.arange(10), 2, "dirichlet")


def test_fedavg_weights_by_sample_count_and_finite_check():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 8.0]), "n": torch.tensor(5)}
    merged = weighted_average([a, b], [1, 2])
    torch.testing.assert_close(merged["w"], torch.tensor([3.0, 6.0]))
    assert merged["n"].item() == 5
    assert finite(a) and not finite({"w": torch.tensor([float("nan")])})
    assert "norms.0.running_mean" in batchnorm_keys(build_model("gcn"))


def test_client_drift_is_the_spread_of_updates_around_their_mean():
    from mlib.federated.aggregate import client_drift

    start = {"w": torch.zeros(2)}
    same = client_drift(start, [{"w": torch.tensor([1.0, 1.0])}] * 3, [1, 1, 1], ["w"])
    assert same[0] == pytest.approx(0.0) and same[1] == pytest.approx(2**0.5)
    drift, update = client_drift(
        start, [{"w": torch.tensor([2.0, 0.0])}, {"w": torch.tensor([0.0, 0.0])}], [1, 3], ["w"]
    )
    assert update == pytest.approx(0.5)  # the weighted mean update is (0.5, 0)
    assert drift == pytest.approx((0.25 * 1.5**2 + 0.75 * 0.5**2) ** 0.5)


def test_pooled_scaler_equals_the_scaler_of_all_crystals():
    y = np.random.default_rng(0).normal(3.0, 2.0, size=50)
    parts = [y[:10], y[10:35], y[35:]]
    scaler = pooled_scaler([(len(p), p.sum(), (p**2).sum()) for p in parts])
    assert scaler.mean == pytest.approx(y.mean()) and scaler.std == pytest.approx(y.std(ddof=1))


def test_fedprox_keeps_the_local_model_closer_to_the_global_one(graph_set):
    split, y, shards = setup(graph_set)
    data = client_data(graph_set.graphs, y, shards, 8, 0)[0]
    seed_everything(0)
    model = build_model("gcn")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    scaler = pooled_scaler([data.stats()])
    drift = {}
    for mu in (0.0, 10.0):
        state = local_update(model, start, data, scaler, epochs=3, lr=0.01, mu=mu).state
        drift[mu] = sum(float(((state[k] - start[k]) ** 2).sum()) for k, _ in model.named_parameters())
    assert drift[10.0] < drift[0.0]


def test_federation_is_deterministic_and_learns(graph_set):
    split, y, shards = setup(graph_set)
    runs = []
    for _ in range(2):
        federation = Federation(
            lambda: build_model("gcn", hidden=16),
            graph_set.graphs,
            y,
            split,
            shards,
            FedConfig("fedprox", rounds=4, local_epochs=2, lr=0.01, batch_size=8),
        )
        runs.append(federation.run(show=False))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert runs[0]["val_mse"].min() < runs[0]["val_mse"].iloc[0]
    assert (runs[0]["client_drift"] > 0).all() and (runs[0]["update_norm"] > 0).all()


def test_an_interrupted_federation_continues_exactly_where_it_stopped(graph_set):
    def federation():
        return gcn_federation(graph_set, FedConfig("fedprox", rounds=4, local_epochs=1, mu=0.1, lr=0.01, batch_size=8))

    whole = federation()
    expected = whole.run(show=False)
    saved = []

    def interrupt(f):
        saved.append(copy.deepcopy(f.state()))
        if len(f.history) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        federation().run(show=False, on_round=interrupt)
    resumed = federation()
    resumed.restore(saved[-1])
    pd.testing.assert_frame_equal(resumed.run(show=False), expected)
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_a_federated_run_of_the_store_resumes_from_its_last_round(graph_set, tmp_path):
    from mlib.store import RunMismatch
    from mlib.store_paths import federated_run
    from mlib.study.nb05_federated import run_federated

    config = FedConfig(rounds=3, local_epochs=1, lr=0.01, batch_size=8)
    args = ("gcn", {"hidden": 16}, graph_set, "y", config, "iid", 3, 0.5)
    row, history = run_federated(*args, tmp_path / "a")
    folder = federated_run(tmp_path / "a", "iid", "fedavg", "gcn", "y", 0)
    for name in ("run.json", "model.pt", "history.csv"):  # as if interrupted after its last round
        (folder / name).unlink()
    checkpoint = torch.load(folder / "last.pt", weights_only=False)
    again, resumed = run_federated(*args, tmp_path / "a")
    pd.testing.assert_frame_equal(resumed, history)
    assert again["mae"] == row["mae"]
    assert checkpoint["seconds"] > 0 and again["seconds"] >= checkpoint["seconds"]  # earlier sittings counted
    (folder / "run.json").unlink()
    other = ("gcn", {"hidden": 16}, graph_set, "y", replace(config, lr=0.02), "iid", 3, 0.5)
    with pytest.raises(RunMismatch, match="last.pt holds a run made with another key"):
        run_federated(*other, tmp_path / "a")


def test_rounds_stop_patience_rounds_after_the_best(graph_set):
    federation = gcn_federation(graph_set, FedConfig(rounds=30, local_epochs=1, lr=0.05, batch_size=8, patience=2))
    history = federation.run(show=False)
    best = int(history["val_mse"].idxmin())
    assert len(history) < 30 and len(history) - 1 - best == 2 and federation.best[1] == best + 1


def test_faults_are_logged_and_the_round_goes_on(graph_set):
    split, y, shards = setup(graph_set)
    shards = [*shards, np.array([], dtype=int)]  # a fourth client with no data

    def flaky(model, state, data, *args):
        update = local_update(model, state, data, *args)
        if data.client == 0 and args[-1] == 1:
            raise ConnectionError("site 0 went away")
        if data.client == 1:
            update.state = {k: v * float("nan") if v.is_floating_point() else v for k, v in update.state.items()}
        return update

    federation = Federation(
        lambda: build_model("gcn", hidden=16),
        graph_set.graphs,
        y,
        split,
        shards,
        FedConfig(rounds=2, local_epochs=1, batch_size=8),
        update=flaky,
    )
    history = federation.run(show=False)
    log = pd.DataFrame(federation.log)
    assert log.query("client == 3")["status"].tolist() == ["no data"]
    assert log.query("client == 0 and round == 1")["status"].item() == "failed"
    assert "site 0 went away" in log.query("client == 0 and round == 1")["reason"].item()
    assert set(log.query("client == 1")["status"]) == {"rejected"}
    assert history["clients"].tolist() == [1, 2] and finite(federation.global_state)
    assert federation.summary()["failed"] == 1 and federation.summary()["rejected"] == 2


def test_a_round_without_any_usable_update_is_an_error(graph_set):
    split, y, shards = setup(graph_set)

    def broken(*args):
        raise RuntimeError("disk full")

    federation = Federation(
        lambda: build_model("gcn", hidden=16),
        graph_set.graphs,
        y,
        split,
        shards,
        FedConfig(rounds=1, local_epochs=1),
        update=broken,
    )
    with pytest.raises(FederationError, match="round 1: no client update"):
        federation.run(show=False)


def test_local_batch_norm_stays_on_the_clients(graph_set):
    federation = gcn_federation(graph_set, FedConfig(rounds=2, local_epochs=1, batch_size=8, bn="local"))
    initial = {k: v.clone() for k, v in federation.global_state.items()}
    federation.run(show=False)
    key = "norms.0.running_mean"
    torch.testing.assert_close(federation.global_state[key], initial[key])  # never averaged into the global model
    assert not torch.equal(federation.local_bn[0][key], federation.local_bn[1][key])


def test_config_and_notebook_parameters_fail_fast():
    with pytest.raises(ValueError, match="unknown algorithm 'fedsgd'"):
        FedConfig("fedsgd")
    with pytest.raises(ValueError, match="mu must be >= 0"):
        FedConfig(mu=-1)
    build("05_federated", {"out_dir": "x"})
    with pytest.raises(ParameterError, match="unknown partition"):
        build("05_federated", {"out_dir": "x", "partition": "random"})
    with pytest.raises(ParameterError, match="unknown algorithm"):
        build("05_federated", {"out_dir": "x", "algorithms": ["fedsgd"]})
    with pytest.raises(ParameterError, match="model_seeds: 'm3gnet': \\[5\\]"):
        build("05_federated", {"out_dir": "x", "seeds": [0, 1], "model_seeds": {"m3gnet": [5]}})
    with pytest.raises(ParameterError, match="model_algorithms: 'cgcnn'"):
        build("05_federated", {"out_dir": "x", "model_algorithms": {"cgcnn": ["fedsgd"]}})
    P = build(
        "05_federated",
        {"out_dir": "x", "seeds": [0, 1], "model_seeds": {"m3gnet": [0]}, "model_algorithms": {"cgcnn": ["fedavg"]}},
    )
    assert P.seeds_for("m3gnet") == [0] and P.seeds_for("gcn") == [0, 1]
    assert P.algorithms_for("cgcnn") == ["fedavg"] and P.algorithms_for("gcn") == list(P.algorithms)
    assert P.seeds_label() == "seeds [0, 1] (M3GNet [0])"
    assert P.algorithms_label() == " (CGCNN FedAvg only)"
    assert build("05_federated", {"out_dir": "x"}).algorithms_label() == ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_sites(folder, frame: pd.DataFrame) -> list:
    """Two sites' CSVs (id, cif, y): the even and the odd rows of ``frame``."""
    paths = []
    for k, part in enumerate((frame.iloc[::2], frame.iloc[1::2])):
        rows = [
            {
                "id": r.id,
                "y": r.y,
                "cif": Structure(r.source["lattice"], r.source["species"], r.source["frac_coords"]).to(fmt="cif"),
            }
            for r in part.itertuples()
        ]
        paths.append(folder / f"site{k}.csv")
        pd.DataFrame(rows).to_csv(paths[-1], index=False)
    return paths


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "model, hyper",
    [("gcn", {"hidden": 16}), ("m3gnet", {"units": 16, "nblocks": 1})],  # M3GNet: matgl's PyG graphs over Flower
)
def test_flower_deployment_matches_the_in_process_engine(tmp_path, model, hyper):
    """SuperLink + two SuperNodes + flwr run (Flower's deployment engine) give the in-process engine's weights."""
    from mlib import model_file

    sites = write_sites(tmp_path, salts())
    site_sets = [
        featurize(pd.read_csv(p).rename(columns={"cif": "source"}), p.stem, graph_spec(model), cache=False)
        for p in sites
    ]
    graphs = site_sets[0].graphs + site_sets[1].graphs
    y = torch.cat([s.target("y") for s in site_sets])
    n0 = len(site_sets[0])
    shards = [np.arange(n0), np.arange(n0, len(graphs))]
    split = {"train": np.arange(len(graphs)), "val": np.arange(4), "test": np.arange(4)}
    config = FedConfig("fedprox", rounds=2, local_epochs=1, mu=0.1, lr=0.01, batch_size=8)
    federation = Federation(lambda: build_model(model, **hyper), graphs, y, split, shards, config)
    federation.run(show=False)

    port = free_port()
    superlink = f"127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlib.federated.flower"]
    home = ["--home", str(tmp_path / "flwr")]
    procs = [
        subprocess.Popen(
            [*cmd, "superlink", "--host", "127.0.0.1", "--port", str(port), *home],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        for k, path in enumerate(sites):
            procs.append(
                subprocess.Popen(
                    [
                        *cmd,
                        "site",
                        "--superlink",
                        superlink,
                        "--client-id",
                        str(k),
                        "--data",
                        str(path),
                        "--target",
                        "y",
                        "--model",
                        model,
                        "--hyper",
                        json.dumps(hyper),
                        "--batch-size",
                        "8",
                        "--port",
                        str(free_port()),
                        *home,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        out = subprocess.run(
            [
                *cmd,
                "run",
                "--superlink",
                superlink,
                "--clients",
                "2",
                "--algorithm",
                "fedprox",
                "--rounds",
                "2",
                "--local-epochs",
                "1",
                "--lr",
                "0.01",
                "--mu",
                "0.1",
                "--timeout",
                "120",
                "--model",
                model,
                "--hyper",
                json.dumps(hyper),
                "--out",
                str(tmp_path / "fed.pt"),
                *home,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    loaded = model_file.load(tmp_path / "fed.pt")
    details = loaded.info["details"]
    assert loaded.info["name"] == model and details["config"]["algorithm"] == "fedprox" and details["sites"] == 2
    assert loaded.scaler.mean == pytest.approx(float(y.mean()), rel=1e-5)
    final = loaded.model.state_dict()
    for key, value in federation.global_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(final[key], value, rtol=1e-4, atol=1e-5)


def site_command(tmp_path, superlink: str, data, *extra: str) -> list[str]:
    """``python -m mlib.flower site`` for site 0 with its Flower state in ``tmp_path``."""
    return [
        sys.executable,
        "-m",
        "mlib.federated.flower",
        "site",
        "--superlink",
        superlink,
        "--client-id",
        "0",
        "--data",
        str(data),
        "--home",
        str(tmp_path),
        *extra,
    ]


def test_a_site_without_its_data_says_so_in_one_line(tmp_path):
    cmd = site_command(tmp_path, "127.0.0.1:1", tmp_path / "missing.csv")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and out.stderr.strip().count("\n") == 0 and "missing.csv does not exist" in out.stderr


def test_a_site_without_a_superlink_says_it_waits_and_for_how_long(tmp_path):
    path = write_sites(tmp_path, salts())[0]
    cmd = site_command(tmp_path, f"127.0.0.1:{free_port()}", path, "--target", "y", "--wait", "1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "waiting for the SuperLink at 127.0.0.1:" in out.stdout and "(up to 1 s)" in out.stdout
    assert out.stderr.strip().startswith("error: no SuperLink at") and "Traceback" not in out.stderr


def test_flower_run_config_defaults_are_the_catalogue_s():
    from mlib.catalogue import FEDERATION
    from mlib.federated.task import RUN_CONFIG

    assert RUN_CONFIG["num-server-rounds"] == FEDERATION["rounds"]
    assert (RUN_CONFIG["local-epochs"], RUN_CONFIG["lr"], RUN_CONFIG["mu"]) == (
        FEDERATION["local_epochs"],
        FEDERATION["lr"],
        FEDERATION["mu"],
    )


def test_published_tables_show_display_names_and_units():
    from mlib.study.nb05_federated import display_names, partition_table

    runs = pd.DataFrame(
        {
            "model": ["gcn"] * 4,
            "target": ["formation_energy_per_atom"] * 4,
            "partition": ["iid", "iid", "chemistry", "chemistry"],
            "algorithm": ["fedavg", "fedprox", "fedavg", "fedprox"],
            "mae": [0.1, 0.12, 0.5, 0.4],
        }
    )
    table = display_names(partition_table(runs))
    assert list(table.columns[:4]) == ["model", "target", "unit", "partition"]
    assert set(table["model"]) == {"GCN"} and set(table["target"]) == {"formation energy"}
    assert set(table["unit"]) == {"eV/atom"} and list(table["algorithm"]) == ["FedAvg", "FedProx"] * 2
    assert table["MAE mean"].tolist() == [0.1, 0.12, 0.5, 0.4]


def test_the_round_log_reads_every_federated_run_whatever_its_folder_depth(tmp_path):
    from mlib.store_paths import federated_root
    from mlib.study.nb05_federated import round_log

    folders = ["iid/fedavg/gcn/band_gap/seed0", "grid/iid/e5/fedprox/mu0.1/gcn/band_gap/seed1", "a/seed2"]
    for k, folder in enumerate(folders):
        path = federated_root(tmp_path) / folder
        path.mkdir(parents=True)
        pd.DataFrame({"round": [1, 2], "client": [0, 0], "status": ["ok", f"rejected {k}"]}).to_csv(
            path / "rounds.csv", index=False
        )
    log = round_log(tmp_path)
    assert sorted(log["run"]) == sorted(folders) and set(log["status"]) == {"rejected 0", "rejected 1", "rejected 2"}


def test_table_one_compares_like_for_like_and_names_each_row_s_crystals():
    from mlib import published
    from mlib.study.nb05_federated import beside_paper, table1

    fed = pd.DataFrame(
        {
            "target": ["formation_energy_per_atom"] * 2,
            "model": ["m3gnet"] * 2,
            "algorithm": ["fedavg"] * 2,
            "seed": [0, 1],
            "crystals": [4999, 4999],
            "test": [500, 500],
            **{m: [0.2, 0.2] for m in ("mse", "rmse", "mae", "r2")},
        }
    )
    central = pd.DataFrame(
        {
            "target": ["formation_energy_per_atom"] * 2,
            "model": ["m3gnet"] * 2,
            "mae": [0.05, 0.05],  # its epoch of lowest validation MAE: not what the federation is read at
            "mae (best val MSE)": [0.1, 0.1],
            "r2 (best val MSE)": [0.9, 0.9],
        }
    )
    row = table1(fed, central).iloc[0]
    assert row["MAE / central"] == pytest.approx(2.0) and row["central MAE"].startswith("0.1 ")
    assert row["crystals"] == 4999 and row["test crystals"] == 500
    sets = {"m3gnet": GraphSet("mp-cgcnn (first 5,000)", [None] * 4999, pd.DataFrame(), GraphSpec())}
    paper = beside_paper(fed, sets).set_index(["model", "target"]).loc[("m3gnet", "formation_energy_per_atom")]
    assert paper["crystals (paper)"] == published.FEDERATED_DATA
    assert paper["crystals (this study)"] == "mp-cgcnn (first 5,000), 4,999 crystals"
    assert "Sasaki" in published.FEDERATED_PAPER
