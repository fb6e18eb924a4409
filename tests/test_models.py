"""The five models behind one interface: shapes, permutation invariance, overfitting, matgl round trip."""

import dgl
import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from mlib.data.errors import BadEntry
from mlib.data.skips import Skips
from mlib.graphs.featurize import GraphSet, collate, featurize
from mlib.models.registry import MODELS, build_model, defaults, graph_spec
from mlib.params import ParameterError, TrainConfig, build
from mlib.study.nb04b_models import beside_paper, common_crystals, summarise
from mlib.training import fit_regressor, seed_everything
from tests.conftest import DISTORTED, needs_mirror

FIVE = ["gcn", "sage", "gine", "megnet", "m3gnet"]


def graphs_of(structures: list[Structure], model: str, targets=None) -> GraphSet:
    frame = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(len(structures))],
            "source": [
                {"lattice": s.lattice.matrix, "species": [x.species_string for x in s], "frac_coords": s.frac_coords}
                for s in structures
            ],
            "formula": [s.composition.reduced_formula for s in structures],
            "y": targets if targets is not None else np.zeros(len(structures)),
        }
    )
    return featurize(frame, "test", graph_spec(model), cache=False)


def salts() -> list[Structure]:
    """16 CsCl-type binaries with distinct compositions (a model can tell them apart by atoms alone)."""
    return [
        Structure(Lattice.cubic(3.2 + 0.15 * i + 0.1 * j), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        for i, a in enumerate(["Li", "Na", "K", "Rb"])
        for j, b in enumerate(["F", "Cl", "Br", "I"])
    ]


@pytest.mark.parametrize("name", ["cgcnn", *FIVE])
def test_one_value_per_crystal_and_crystal_vectors(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    graphs = graphs_of([DISTORTED, *salts()[:3]], name).graphs
    batch = collate(graphs)
    assert model(batch).shape == (4,)
    assert model(collate(graphs[:1])).shape == (1,)
    vectors = model.embed(batch)
    assert vectors.shape[0] == 4 and vectors.ndim == 2 and torch.isfinite(vectors).all()
    torch.testing.assert_close(model.regress(vectors), model(batch))  # the head alone, as frozen fine-tuning runs it


@pytest.mark.parametrize("name", FIVE)
def test_prediction_is_invariant_to_atom_order(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    order = (4, 2, 0, 3, 1)
    permuted = Structure(
        DISTORTED.lattice, [DISTORTED[i].species_string for i in order], [DISTORTED[i].frac_coords for i in order]
    )
    a, b = (model(g) for g in graphs_of([DISTORTED, permuted], name).graphs)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FIVE)
def test_overfits_sixteen_crystals(name):
    seed_everything(0)
    y = torch.from_numpy(np.random.default_rng(0).normal(size=16).astype(np.float32))
    batch = collate(graphs_of(salts(), name).graphs)
    model = build_model(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(400):
        loss = torch.nn.functional.mse_loss(model(batch), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss.item() < losses[0] / 20:
            break
    assert losses[-1] < losses[0] / 10, f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("name", ["megnet", "m3gnet"])
def test_matgl_wrapper_round_trip(tmp_path, name):
    from mlib import model_file

    structures = salts()
    graph_set = graphs_of(structures, name, targets=np.linspace(-1, 1, 16))
    hyper = {"nblocks": 1}
    result = fit_regressor(
        lambda: build_model(name, **hyper),
        graph_set,
        "y",
        TrainConfig(epochs=2, batch_size=8),
        tmp_path,
        formula_column="formula",
        fractions=(0.5, 0.25, 0.25),
        show=False,
    )
    saved = model_file.load(tmp_path / "model.pt")
    loaded = saved.model
    assert saved.info["name"] == name and saved.info["hyper"]["nblocks"] == 1 and saved.spec == graph_set.spec
    assert type(loaded.net) is type(result.trainer.model.net)
    batch = collate(graph_set.graphs)
    result.trainer.model.eval()
    torch.testing.assert_close(loaded(batch), result.trainer.model(batch))
    # the crystal vector is what enters matgl's final MLP
    final = loaded.net.output_proj if name == "megnet" else loaded.net.final_layer
    torch.testing.assert_close(final(loaded.embed(batch)).reshape(-1), loaded(batch))
    torch.testing.assert_close(loaded.regress(loaded.embed(batch)), loaded(batch))


def test_registry_rejects_unknown_models_and_hyperparameters():
    with pytest.raises(ValueError, match="unknown model 'gat'"):
        build_model("gat")
    with pytest.raises(ValueError, match="m3gnet has no hyperparameter 'hiden'"):
        build_model("m3gnet", hiden=3)
    assert defaults("m3gnet")["threebody_cutoff"] == 4.0 and defaults("gine")["hidden"] == 64
    assert graph_spec("megnet").kind == "matgl" and graph_spec("gcn").kind == "cgcnn"
    assert set(FIVE) <= set(MODELS)


def test_models_params_fail_fast():
    base = {"out_dir": "x"}
    build("04b_models", base)
    with pytest.raises(ParameterError, match="unknown model"):
        build("04b_models", {**base, "models": ["gcn", "schnet"]})
    with pytest.raises(ParameterError, match="unknown hyperparameter"):
        build("04b_models", {**base, "model_hyper": {"gcn": {"units": 3}}})
    with pytest.raises(ParameterError, match="seeds"):
        build("04b_models", {**base, "seeds": [0, 0]})


def test_common_crystals_keeps_shared_ids_and_counts_the_rest():
    def graph_set(ids, skipped):
        skips = Skips()
        for entry in skipped:
            skips.add(BadEntry(entry, "atom 0 has no neighbour", "graph", "atom without neighbours"))
        return GraphSet("t", [dgl.graph(([], []), num_nodes=1) for _ in ids], pd.DataFrame({"id": ids}), None, skips)

    sets = common_crystals({"cgcnn": graph_set(["a", "b", "c"], []), "matgl": graph_set(["a", "c"], ["b"])})
    assert sets["cgcnn"].table["id"].tolist() == sets["matgl"].table["id"].tolist() == ["a", "c"]
    assert sets["cgcnn"].skips.table()["id"].tolist() == ["b"]
    assert "no matgl graph" in sets["cgcnn"].skips.table()["kind"].iloc[0]
    # matgl graphs built for the first two crystals only (a model limit): crystals beyond its range stay
    ranged = common_crystals({"cgcnn": graph_set(["a", "b", "c", "d"], []), "matgl": graph_set(["a"], ["b"])})
    assert ranged["cgcnn"].table["id"].tolist() == ["a", "c", "d"] and ranged["matgl"].table["id"].tolist() == ["a"]


def test_summary_is_mean_and_std_over_seeds():
    runs = pd.DataFrame(
        {
            "model": "gcn",
            "target": "band_gap",
            "seed": [0, 1, 2],
            "test": 10,
            "mse": [1.0, 2.0, 3.0],
            "rmse": 1.0,
            "mae": [0.1, 0.2, 0.3],
            "r2": 0.5,
            "seconds": 60,
        }
    )
    row = summarise(runs).iloc[0]
    assert row["seeds"] == 3 and row["MAE"] == "0.2 ± 0.1" and row["MSE"] == "2 ± 1"


def test_cgcnn_stands_beside_the_cgcnn_papers_mae_for_each_target_it_ran():
    from mlib import published

    runs = pd.DataFrame(
        {"model": ["cgcnn", "cgcnn", "gcn"], "target": "band_gap", "crystals": 100, "test": 10}
        | {"mae": [0.3, 0.5, 0.1], "r2": [0.8, 0.9, 0.5]}
    )
    table = beside_paper(runs)
    assert len(table) == 1 and table.loc[0, "MAE (this study)"] == "0.4 ± 0.14"  # GCN and formation energy: none
    assert table.loc[0, "MAE (CGCNN paper)"] == published.CGCNN_MP_MAE["band_gap"] and table.loc[0, "unit"] == "eV"


def test_parallel_workers_give_the_same_runs_as_one_process(tmp_path):
    from dgl import utils as dgl_utils

    from mlib.study.nb04b_models import train_models

    threads = torch.get_num_threads(), dgl_utils.get_num_threads()
    torch.set_num_threads(1)  # workers run one thread each; the same here makes the float sums comparable
    dgl_utils.set_num_threads(1)

    graphs = graphs_of(salts(), "gcn", targets=np.linspace(-1, 1, 16))
    graphs.table["formula"] = [s.composition.reduced_formula for s in salts()]
    sets = {"gcn": graphs, "sage": graphs}
    config = TrainConfig(epochs=2, batch_size=4)
    runs = {
        w: train_models(["gcn", "sage"], ["y"], [0, 1], sets, config, tmp_path / f"w{w}", workers=w)[0] for w in (1, 2)
    }
    torch.set_num_threads(threads[0])
    dgl_utils.set_num_threads(threads[1])
    columns = ["model", "seed", "mse", "mae", "r2", "best_epoch"]
    pd.testing.assert_frame_equal(runs[1][columns], runs[2][columns])


def test_m3gnet_three_body_messages_reach_their_own_bonds():
    """matgl 1.0.0 sent three-body messages to the wrong bonds whenever some bonds lie between the three-body
    cutoff (4 A) and the graph cutoff (5 A). On a crystal with such bonds, the triplets M3GNet uses are exactly
    the pairs of distinct bonds i->j, i->k from one centre atom, both within 4 A; and the layer's update of each
    bond equals a brute-force sum over that bond's own triplets."""
    crystal = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])  # bonds at 3.00 and 4.24 A (5.20: beyond 5 A)
    graph = graphs_of([crystal], "m3gnet").graphs[0]
    torch.manual_seed(0)
    model = build_model("m3gnet", nblocks=1).eval()
    layer = model.net.three_body_interactions[0]
    seen = {}
    layer.register_forward_hook(lambda module, args, out: seen.update(args=args, out=out))
    model(collate([graph]))
    dst_atom, line, _, num_bonds, basis, cutoff, node_feat, edge_feat = seen["args"]
    src, dst = graph.edge_index
    dist = (graph.pos[dst] + graph.pbc_offshift - graph.pos[src]).norm(dim=1)
    assert ((dist > 4.0) & (dist < 5.0)).any(), "the crystal has bonds between the two cutoffs"
    within = dist <= 4.0
    expected = {
        (a, b)
        for a in range(num_bonds)
        for b in range(num_bonds)
        if a != b and src[a] == src[b] and within[a] and within[b]
    }
    used = list(zip(line[0].tolist(), line[1].tolist()))
    assert len(used) == len(set(used)) and set(used) == expected
    # each triplet's message lands on its own bond i->j, from the neighbour k of bond i->k, weighted by both cutoffs
    atoms = layer.update_network_atom(node_feat)
    total = torch.zeros(num_bonds, basis.shape[1])
    for t, (ij, ik) in enumerate(used):
        total[ij] += basis[t] * atoms[dst_atom[ik]] * cutoff[ij] * cutoff[ik]
    torch.testing.assert_close(seen["out"], edge_feat + layer.update_network_bond(total))
    assert (total[~within] == 0).all()  # bonds beyond 4 A receive no three-body message


def test_m3gnet_with_three_body_graphs_built_once_gives_the_same_numbers():
    """The speed-up changes no result: three-body graphs attached per crystal and batched (bond ids offset per
    crystal) give M3GNet's forward pass and gradients of building them in every forward pass."""
    structures = [DISTORTED, *salts()[:5]]
    plain, prepared = graphs_of(structures, "m3gnet").graphs, graphs_of(structures, "m3gnet").graphs
    torch.manual_seed(0)
    model = build_model("m3gnet", nblocks=2)
    model.prepare(prepared)
    assert all(g.threebody_cutoff == 4.0 for g in prepared) and not hasattr(plain[0], "line_edge_index")
    outputs = []
    for graphs in (plain, prepared):
        model.zero_grad()
        out = model(collate(graphs))
        out.sum().backward()
        outputs.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(outputs[0][0], outputs[1][0])
    for a, b in zip(outputs[0][1], outputs[1][1]):
        torch.testing.assert_close(a, b)
    batch = collate(prepared[2:4])  # the second crystal's bond ids are offset by the first one's bonds
    first = prepared[2].edge_index.shape[1]
    assert batch.kept_edge_ids.min() == 0 and batch.kept_edge_ids.max() >= first


def test_matgl_runs_are_keyed_by_the_installed_matgl():
    """A run of one matgl release is never read back as another's: the model key names the library version."""
    from importlib.metadata import version

    from mlib.training import model_key

    assert version("matgl") in MODELS["m3gnet"].library
    assert model_key("m3gnet", {})["library"] == MODELS["m3gnet"].library
    assert "library" not in model_key("cgcnn", {})  # the DGL models' keys are unchanged


def test_a_model_file_of_matgl_1_graphs_is_refused_with_what_to_do(tmp_path):
    """MEGNet and M3GNet files trained on matgl 1.0.0's DGL graphs (the legacy runs of the store) are refused."""
    from mlib import model_file, store
    from mlib.scaling import Standardizer

    path = tmp_path / "model.pt"
    spec = graph_spec("m3gnet")
    model_file.save(
        path,
        build_model("m3gnet", nblocks=1),
        target="y",
        scaler=Standardizer(0.0, 1.0),
        spec=spec,
        dataset="t",
        data_digest=None,
    )
    assert model_file.load(path).info["library"] == MODELS["m3gnet"].library
    record = store.load_torch(path)
    record["graph"]["featurizer_version"] = 1
    del record["library"]
    store.save_torch(path, record)
    with pytest.raises(model_file.ModelFileError, match="featuriser version 1.*matgl 1.0.0's DGL graphs.*retrain"):
        model_file.load(path)


def test_device_cuda_is_for_the_matgl_models_and_needs_a_gpu(tmp_path):
    with pytest.raises(ParameterError, match=r"device cuda: \['cgcnn', 'gcn'\] run on DGL 1.1.3"):
        build("04b_models", {"out_dir": "x", "device": "cuda", "models": ["cgcnn", "gcn", "m3gnet"]})
    P = build("04b_models", {"out_dir": "x", "device": "cuda", "models": ["megnet", "m3gnet"]})
    assert P.device == "cuda"
    assert "device" not in TrainConfig().key() and TrainConfig(device="cuda").key()["device"] == "cuda"
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal below is for machines without one")
    graph_set = graphs_of(salts(), "megnet", targets=np.linspace(-1, 1, 16))
    with pytest.raises(RuntimeError, match="device cuda: torch .* sees no GPU"):
        fit_regressor(
            lambda: build_model("megnet", nblocks=1), graph_set, "y", TrainConfig(epochs=1, device="cuda"), tmp_path
        )


def test_matgl_runs_are_repeated_beside_the_stored_matgl_1_runs(tmp_path):
    """Each stored matgl 1.0.0 run is trained again on its own crystals, split, seed and budget and paired with it.
    Here the stored run was made by the installed matgl itself, so both sides must agree to the last digit."""
    from mlib import store_paths
    from mlib.catalogue import MP_SPLIT
    from mlib.outputs import Run
    from mlib.study.nb04b_models import beside_matgl1

    target = "formation_energy_per_atom"
    graph_set = graphs_of(salts(), "megnet", targets=np.linspace(-1, 1, 16))
    graph_set.table[target] = graph_set.table["y"]
    store = tmp_path / "store"
    hyper, config = {"nblocks": 1}, TrainConfig(epochs=2, batch_size=8, seed=0)
    stored = fit_regressor(
        lambda: build_model("megnet", **hyper),
        graph_set,
        target,
        config,
        store_paths.model_run(store, "megnet", target, 0, store_paths.MATGL_1),
        formula_column="formula",
        fractions=MP_SPLIT,
        show=False,
    )
    P = build(
        "04b_models",
        {
            "out_dir": str(tmp_path / "out"),
            "store_dir": str(store),
            "models": ["megnet"],
            "targets": [target],
            "seeds": [0],
        },
    )
    summary = beside_matgl1(P, Run(P, "04b_models"), {"megnet": graph_set})
    runs = pd.read_csv(tmp_path / "out" / "matgl_versions_runs.csv")
    assert runs["MAE (matgl 1.0.0, three-body routing defect)"].iloc[0] == pytest.approx(stored.metrics["mae"])
    assert runs["MAE (matgl 4.1.2)"].iloc[0] == pytest.approx(stored.metrics["mae"], rel=1e-6)
    assert summary["verdict"].tolist() == ["too few seeds to tell"] and summary["seeds"].tolist() == [1]
    assert (store / "04b_models" / "beside-matgl-1.0.0" / "megnet" / target / "seed0" / "run.json").exists()


@needs_mirror
def test_a_stored_matgl_1_run_is_repeated_on_its_own_range_of_the_data_set_when_the_study_reads_more(tmp_path):
    """04b's profile grows (model_limits 5,000 -> 10,000): the repeat of a run stored on the first N crystals draws
    them from a load of the first N again, so its key is the key the run had (a run of the same code is read back)."""
    import json

    from mlib import datasets, store_paths
    from mlib.catalogue import MP_SPLIT
    from mlib.study.nb04b_models import matgl1_jobs

    target, hyper = "formation_energy_per_atom", {"nblocks": 1}
    first = datasets.load_mp("mp-cgcnn", 16, graph_spec("megnet"))
    store = tmp_path / "store"
    folder = store_paths.model_run(store, "megnet", target, 0, store_paths.MATGL_1)
    config = TrainConfig(epochs=1, batch_size=8, seed=0)
    kw = {"formula_column": "formula", "fractions": MP_SPLIT, "show": False}
    fit_regressor(lambda: build_model("megnet", **hyper), first, target, config, folder, **kw)
    P = build(
        "04b_models",
        {"out_dir": str(tmp_path / "out"), "store_dir": str(store), "models": ["megnet"], "targets": [target],
         "seeds": [0], "model_hyper": {"megnet": hyper}},
    )  # fmt: skip
    more = {"megnet": datasets.load_mp("mp-cgcnn", 20, graph_spec("megnet"))}
    jobs, _, skipped = matgl1_jobs(P, more)
    assert skipped == [] and len(jobs) == 1 and jobs[0].graphs.name == "mp-cgcnn (first 16)"
    job = jobs[0]
    repeat = fit_regressor(
        lambda: build_model("megnet", **hyper), job.graphs, target, job.config, tmp_path / "r", split=job.split, **kw
    )
    stored_key = json.loads((folder / "run.json").read_text())["key"]
    assert json.loads((repeat.folder / "run.json").read_text())["key"] == stored_key
