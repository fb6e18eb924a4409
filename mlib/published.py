"""Published numbers the study compares with, each with its citation (no other module types a number in).

Imports nothing: tables and notebooks read these values, never restate them.
"""

from __future__ import annotations

CGCNN_PAPER = "Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018)"
FEDERATED_PAPER = 'Y. Sasaki, "Pre-trained Model on Graph Neural Networks for Material Discovery" (2026), Table 1'
# The crystals of the federated paper's Table 1: the Materials Project snapshot it names, mp.2018.6.1, whose file
# holds 69,239 crystals (the paper's split and any filtering are not published).
FEDERATED_DATA = "mp.2018.6.1 (69,239 crystals in the data set)"
CRABNET_PAPER = "Wang, Kauwe, Murdock & Sparks, npj Comput. Mater. 7, 77 (2021) (CrabNet benchmark split)"

# CGCNN paper, AFLOW AGL thermal expansion data set: counts and target statistics (1/K).
AGL_DATASET = {
    "dataset": "paper (Xie & Grossman data, AFLOW 2018)",
    "entries": 5534,
    "unary": 96,
    "binary": 2490,
    "ternary": 2948,
    "after dedup": 5409,
}
AGL_TARGET_STATS = {"dataset": "paper", "min": -3.17e-6, "max": 5.67e-4, "mean": 5.70e-5}

# CGCNN paper: the best thermal-expansion configuration and its test Pearson R (6:2:2 split, 200 epochs).
CGCNN_THERMAL_BEST = {"conv_layers": 3, "batch_size": 64, "hidden": 64, "lr": 0.01}
CGCNN_THERMAL = {"dataset": "AFLOW AGL, 5,409 compounds", "pearson_r": 0.9572, "epochs": 200}
# CGCNN paper, Table 1, Materials Project: test MAE of formation energy per atom (eV/atom) and band gap (eV).
CGCNN_MP_DATASET = "Materials Project (CGCNN paper, Table 1)"
CGCNN_MP_MAE = {"formation_energy_per_atom": 0.039, "band_gap": 0.388}

# The federated study's data set (figshare article 7451351), as it reports it.
MP_2018_DATASET = {"name": "mp.2018.6.1", "crystals": 69_239}

# The federated study's Table 1 on mp.2018.6.1 (69,239 crystals), FedAvg: test MAE and R2 where reported.
FEDERATED_TABLE1 = [
    {"target": "formation_energy_per_atom", "model": "m3gnet", "algorithm": "fedavg", "mae": 0.099, "r2": 0.975},
    {"target": "band_gap", "model": "m3gnet", "algorithm": "fedavg", "mae": 0.527, "r2": 0.757},
    {"target": "formation_energy_per_atom", "model": "gcn", "algorithm": "fedavg", "mae": 0.166, "r2": float("nan")},
]

# M3GNet's published formation-energy model (Chen & Ong, Nat. Comput. Sci. 2, 718 (2022), as matgl ships it): test
# MAE in eV/atom on its own split of mp.2018.6.1, trained centrally on every crystal.
M3GNET_PAPER = "Chen & Ong, Nat. Comput. Sci. 2, 718 (2022)"
M3GNET_EFORM_MAE = 0.019

# Composition-only models on AFLOW thermal expansion, CrabNet's split (test MAE, 1/K), from CRABNET_PAPER.
COMPOSITION_ONLY_TEC = {"Roost": 3.69e-6, "CrabNet": 3.85e-6, "random forest": 5.44e-6}

# Experimental formation enthalpies (eV/atom), the anchors of 07_experiment.
# Jha et al., Nat. Commun. 10, 5316 (2019): ElemNet (composition only) pre-trained on OQMD, fine-tuned on 1,643
# measured formation enthalpies: test MAE 0.07 eV/atom. Gupta et al., Nat. Commun. 12, 6595 (2021), Table 5: the
# best model trained from scratch on the same experimental set: 0.096 eV/atom.
EXPT_TRANSFER_PAPER = "Jha et al., Nat. Commun. 10, 5316 (2019)"
EXPT_SCRATCH_PAPER = "Gupta et al., Nat. Commun. 12, 6595 (2021), Table 5"
EXPT_ANCHORS = {"ElemNet pre-trained on OQMD, fine-tuned": 0.07, "best from scratch": 0.096}
EXPT_ANCHOR_DATA = "1,643 measured formation enthalpies (SSUB), their own split"
# Issue 40's goal for the study's thermal-expansion predictor, mean over five splits (test R; MAE in 1/K).
THERMAL_GOAL = {"pearson_r": 0.965, "mae": 4.2e-6}
EXPT_GOAL_MAE = 0.06  # eV/atom: issue 39's goal for a pre-trained, fine-tuned structure model at N = all
