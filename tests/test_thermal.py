"""Thermal-expansion data sets: arity counts, dedup, and the AFLOW x MP join."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from mlib.data.aflow import AflowRecord
from mlib.data.skips import Skips
from mlib.data.thermal import arity_counts, build_thermal, drop_duplicates, join_mp, records_frame
from tests.conftest import needs_mirror


def record(auid, compound, elements, counts, sg, target, geometry=True):
    lattice = np.eye(3) * 4.0 if geometry else None
    coords = np.random.default_rng(0).random((sum(counts), 3)) if geometry else None
    return AflowRecord(auid, compound, elements, counts, sg, target, lattice, coords)


def cif(structure: Structure) -> str:
    return structure.to(fmt="cif")


ROCKSALT = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
CSCL_NACL = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # space group 221
SI = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])


def mp_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "material_id": ["mp-22862", "mp-22851", "mp-149"],
            "cif": [cif(ROCKSALT), cif(CSCL_NACL), cif(SI)],
            "formation_energy_per_atom": [-2.1, -1.9, 0.0],
            "band_gap": [5.0, 4.0, 0.6],
        }
    )


def test_join_picks_polymorph_by_space_group_and_counts_misses():
    labels = records_frame(
        [
            record("a1", "Cl1Na1", ("Cl", "Na"), (1, 1), 221, 1e-4, geometry=False),
            record("a2", "Si2", ("Si",), (2,), 227, 1e-5, geometry=False),
            record("a3", "K1", ("K",), (1,), 229, 2e-4, geometry=False),
            record("a4", "Cl1Na1", ("Cl", "Na"), (1, 1), 62, 1e-4, geometry=False),
        ]
    ).drop(columns="source")
    skips = Skips()
    joined, counts = join_mp(labels, mp_frame(), skips)
    assert dict(zip(joined["id"], joined["mp_id"])) == {"a1": "mp-22851", "a2": "mp-149"}
    assert counts == {"formula in MP": 3, "single MP polymorph": 1, "polymorph chosen by space group": 1}
    assert dict(zip(skips.table()["id"], skips.table()["kind"])) == {
        "a3": "formula not in mp-cgcnn",
        "a4": "no MP polymorph in AFLOW's space group",
    }
    assert joined["source"].str.contains("_cell_length_a").all()


def test_build_counts_every_step():
    records = [
        record("g1", "Cl1Na1", ("Cl", "Na"), (1, 1), 225, 1e-4),
        record("g2", "Cl1Na1", ("Cl", "Na"), (1, 1), 225, 1.1e-4),  # duplicate of g1
        record("n1", "Si2", ("Si",), (2,), 227, 1e-5, geometry=False),
    ]
    skips = Skips()
    data, steps, _ = build_thermal("aflow", records, skips)
    counts = dict(zip(steps["step"], steps["count"]))
    assert counts["with AFLOW geometry"] == 2 and counts["dropped: no geometry"] == 1 and counts["after dedup"] == 1
    assert skips.table()["id"].tolist() == ["n1"]
    joined, steps, _ = build_thermal("aflow+mp-join", records, Skips(), mp_frame())
    assert sorted(joined["structure_source"]) == ["aflow", "mp-join"]


def test_dedup_and_arity():
    frame = pd.DataFrame(
        {
            "spacegroup": [225, 225, 221, 227],
            "reduced_formula": ["NaCl", "NaCl", "NaCl", "Si"],
            "nspecies": [2, 2, 2, 1],
        }
    )
    assert len(drop_duplicates(frame)) == 3
    assert arity_counts(frame["nspecies"]) == {"unary": 1, "binary": 3}


@needs_mirror
def test_index_reproduces_the_papers_arity_counts():
    from mlib.study.nb01_data import agl_index_table

    row = agl_index_table().iloc[0]
    assert (row["entries"], row["unary"], row["binary"], row["ternary"]) == (5534, 96, 2490, 2948)


def test_label_spread_of_entries_that_count_as_one_compound():
    from mlib.data.thermal import duplicate_spread

    frame = pd.DataFrame(
        {
            "spacegroup": [225, 225, 225, 221, 194],
            "reduced_formula": ["NaCl", "NaCl", "NaCl", "NaCl", "ZnS"],
            "thermal_expansion": [1.0e-5, 2.0e-5, 3.0e-5, 9.0e-5, 4.0e-5],
        }
    )
    spread = duplicate_spread(frame)
    assert spread["groups with several entries"] == 1 and spread["their entries"] == 3  # 221 and ZnS stand alone
    assert spread["mad"] == pytest.approx((1e-5 + 0 + 1e-5) / 3)
    assert spread["pair"] == pytest.approx((1e-5 + 2e-5 + 1e-5) / 3)


@needs_mirror
def test_zrw2o8_has_no_agl_entry_as_02_train_says():
    from mlib.data.aflow import read_mirror_index
    from mlib.data.thermal import reduced_formula

    formulas = {reduced_formula(row["compound"]) for row in read_mirror_index()}  # all 5,534 AGL entries
    assert "NaCl" in formulas and "ZrW2O8" not in formulas
