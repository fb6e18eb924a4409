"""Crystal graphs: hand-computed neighbours of a simple cubic cell, caching, and each bad-input path."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from mlib.data.errors import BadEntry
from mlib.graphs.atom_features import N_FEATURES, atom_feature_table, block_slices
from mlib.graphs.featurize import featurize
from mlib.graphs.neighbors import GraphSpec, structure_arrays
from tests.conftest import needs_mirror


def simple_cubic(a: float = 3.0, element: str = "Po") -> Structure:
    return Structure(Lattice.cubic(a), [element], [[0, 0, 0]])


def test_simple_cubic_neighbours_by_hand():
    arrays = structure_arrays(simple_cubic(3.0), GraphSpec(radius=8.0, max_neighbors=12))
    # 6 face neighbours at a, then 6 of the 12 edge neighbours at a*sqrt(2): the 12 nearest
    assert len(arrays["dist"]) == 12
    np.testing.assert_allclose(np.sort(arrays["dist"]), [3.0] * 6 + [3.0 * np.sqrt(2)] * 6, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(arrays["vec"], axis=1), arrays["dist"], rtol=1e-6)
    assert set(arrays["dst"]) == {0} and set(arrays["src"]) == {0}
    face = arrays["vec"][np.isclose(arrays["dist"], 3.0)]
    np.testing.assert_allclose(np.sort(np.abs(face).sum(axis=1)), [3.0] * 6, rtol=1e-6)  # +-a along each axis


def test_radius_limits_neighbours():
    arrays = structure_arrays(simple_cubic(3.0), GraphSpec(radius=3.5, max_neighbors=12))
    np.testing.assert_allclose(arrays["dist"], [3.0] * 6, rtol=1e-6)


def frame(sources: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame({"id": list(sources), "source": list(sources.values()), "y": range(len(sources))})


def test_bad_inputs_are_counted_skips_with_reasons():
    good = simple_cubic(3.0).to(fmt="cif")
    data = frame(
        {
            "good": good,
            "broken": "data_x\n_cell_length_a 3\nloop_\n_atom_site_label\nnonsense",
            "lonely": simple_cubic(9.0, "Na").to(fmt="cif"),
            "no-features": simple_cubic(3.0, "Md").to(fmt="cif"),
        }
    )
    graphs = featurize(data, "t", GraphSpec(radius=8.0), cache=False)
    assert graphs.table["id"].tolist() == ["good"]
    kinds = dict(zip(graphs.skips.table()["id"], graphs.skips.table()["kind"]))
    assert kinds == {
        "broken": "unparsable CIF",
        "lonely": "atom without neighbours",
        "no-features": "element without features",
    }


def test_crystals_without_a_finite_target_are_counted_skips():
    data = frame({"a": simple_cubic(3.0).to(fmt="cif"), "b": simple_cubic(3.2).to(fmt="cif")})
    data["y"] = [1.0, float("nan")]
    graphs = featurize(data, "t", cache=False).with_finite("y")
    assert graphs.table["id"].tolist() == ["a"]
    assert graphs.skips.table()[["id", "kind"]].values.tolist() == [["b", "non-finite y"]]


def test_strict_mode_raises_naming_the_entry():
    data = frame({"lonely": simple_cubic(9.0, "Na").to(fmt="cif")})
    with pytest.raises(BadEntry, match="lonely"):
        featurize(data, "t", GraphSpec(radius=8.0), strict=True, cache=False)


def test_graphs_are_cached_and_reloaded_identically():
    data = frame({"a": simple_cubic(3.0).to(fmt="cif"), "b": simple_cubic(3.4, "Cu").to(fmt="cif")})
    first = featurize(data, "t", workers=2)
    second = featurize(data, "t", workers=2)
    assert not first.from_cache and second.from_cache
    for g1, g2 in zip(first.graphs, second.graphs):
        assert g1.num_edges() == g2.num_edges()
        assert np.array_equal(g1.edata["dist"].numpy(), g2.edata["dist"].numpy())
    changed = featurize(data, "t", GraphSpec(radius=5.0), workers=1)
    assert not changed.from_cache  # a new parameter is a new cache entry


def test_matgl_graphs_are_cached_as_tensors_and_reloaded_identically():
    """matgl's PyG graphs are cached as packed tensors (read with weights_only) and come back field for field."""
    import torch

    data = frame({"a": simple_cubic(3.0, "Cu").to(fmt="cif"), "b": simple_cubic(3.4, "Na").to(fmt="cif")})
    spec = GraphSpec(radius=5.0, kind="matgl")
    first, second = featurize(data, "t", spec), featurize(data, "t", spec)
    assert not first.from_cache and second.from_cache
    for g1, g2 in zip(first.graphs, second.graphs):
        assert type(g1) is type(g2) and g1.num_nodes == g2.num_nodes
        for field in ("z", "node_type", "pos", "edge_index", "pbc_offset", "pbc_offshift"):
            assert torch.equal(getattr(g1, field), getattr(g2, field)), field
            assert getattr(g2, field).untyped_storage().nbytes() == getattr(g1, field).untyped_storage().nbytes(), (
                f"{field} of a cached graph is a view of the packed tensors (a worker would be sent all of them)"
            )


def test_atom_feature_table_is_one_hot_per_block():
    table = atom_feature_table()
    assert table.shape == (101, N_FEATURES) == (101, 92)
    for name in ("group", "period", "block"):
        assert (table[1:, block_slices()[name]].sum(axis=1) == 1).all(), name


@needs_mirror
def test_pymatgen_tie_order_keeps_the_reference_implementations_neighbours():
    """The reference keeps ``sorted(structure.get_all_neighbors(r), key=distance)[:12]`` (a stable sort)."""
    import warnings

    from mlib.data.mirror import mirror_file

    folder = mirror_file("cgcnn-sample/atom_init.json").parent
    differs = 0
    for path in sorted(folder.glob("*.cif")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen notes rounded coordinates in one sample CIF
            structure = Structure.from_file(path)
        ours = structure_arrays(structure, GraphSpec(tie_order="pymatgen"))
        reference = []
        for i, nbrs in enumerate(structure.get_all_neighbors(8.0, include_index=True)):
            reference += [(i, n.index, tuple(n.image)) for n in sorted(nbrs, key=lambda n: n[1])[:12]]
        cart = structure.cart_coords
        images = np.linalg.solve(
            structure.lattice.matrix.T, (ours["vec"] - cart[ours["src"]] + cart[ours["dst"]]).T.astype(float)
        ).T
        mine = [(int(d), int(s), tuple(np.rint(im).astype(int))) for d, s, im in zip(ours["dst"], ours["src"], images)]
        assert mine == reference, path.name
        by_index = structure_arrays(structure, GraphSpec(tie_order="index"))
        assert np.allclose(np.sort(by_index["dist"]), np.sort(ours["dist"]))  # same distances, maybe other atoms
        differs += bool((by_index["src"] != ours["src"]).any())
    assert differs >= 3  # ties at the cap are common: the index order keeps other neighbours in 6 of the 10


def test_unknown_tie_order_is_refused():
    with pytest.raises(ValueError, match="unknown tie order"):
        GraphSpec(tie_order="random")


@needs_mirror
def test_reference_atom_features_are_atom_init_json_row_by_row():
    import json

    from mlib.data.mirror import mirror_file
    from mlib.graphs.atom_features import feature_table, from_weights

    atom_init = json.loads(mirror_file("cgcnn-sample/atom_init.json").read_text())
    table = feature_table("reference")
    assert table.shape == (101, N_FEATURES) and not table[0].any()
    assert all(np.array_equal(table[z], np.asarray(atom_init[str(z)], dtype=np.float32)) for z in range(1, 101))
    assert not np.array_equal(table, feature_table("pymatgen"))
    with from_weights():
        assert not feature_table("reference").any()  # a placeholder the saved weights replace
    with pytest.raises(ValueError, match="unknown atom-feature source"):
        feature_table("magpie")


def test_atom_features_from_a_file_of_ones_own(tmp_path):
    import json

    from mlib.graphs.atom_features import feature_table
    from mlib.params import ParameterError, build

    rows = {str(z): [float(z == 8)] * N_FEATURES for z in range(1, 101)}
    (tmp_path / "mine.json").write_text(json.dumps(rows))
    table = feature_table(str(tmp_path / "mine.json"))
    assert table.shape == (101, N_FEATURES) and table[8].all() and not table[7].any()
    (tmp_path / "short.json").write_text(json.dumps({"1": [1.0]}))
    with pytest.raises(ValueError, match="lacks elements"):
        feature_table(str(tmp_path / "short.json"))
    base = {"out_dir": "-", "store_dir": "-"}
    assert build("02_train", {**base, "atom_features": str(tmp_path / "mine.json")}).atom_features.endswith("mine.json")
    with pytest.raises(ParameterError, match="absolute path of an existing"):
        build("02_train", {**base, "atom_features": "mine.json"})


def test_a_subset_of_a_subset_names_its_own_count_only():
    import dgl
    import pandas as pd

    from mlib.graphs.featurize import GraphSet
    from mlib.graphs.neighbors import GraphSpec

    ids = [f"c{k}" for k in range(100)]
    full = GraphSet("mp-cgcnn", [dgl.graph(([], []), num_nodes=1) for _ in ids], pd.DataFrame({"id": ids}), GraphSpec())
    assert full.first(None) is full and full.first(500) is full
    assert full.first(60).first(50).label == "mp-cgcnn (first 50), 50 crystals"


def test_a_limited_set_s_name_gives_back_its_data_set_and_range():
    from mlib.graphs.featurize import GraphSet

    assert GraphSet.first_of("mp-cgcnn (first 5,000)") == ("mp-cgcnn", 5000)
    assert GraphSet.first_of("mp-cgcnn") == ("mp-cgcnn", None)
    assert GraphSet.first_of("aflow ∩ CrabNet split (first 150)") == ("aflow ∩ CrabNet split", 150)
