"""The study's vocabulary in one place: data sets, targets (units, display names), models, federated
settings, graph defaults, the notebooks and their order.

This module imports nothing (standard library only), so every layer of ``mlib`` and every parameter
check can read it without pulling in torch, DGL or another ``mlib`` module. Configurations take their
defaults from here; published numbers live in :mod:`mlib.published`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A property the study predicts: its display name, unit, and the scale figures show it in."""

    name: str
    display: str
    unit: str
    scale: float = 1.0  # figures show value / scale ...
    scaled_unit: str = ""  # ... in this unit (e.g. "10^-6 1/K"); empty: the plain unit

    @property
    def axis_unit(self) -> str:
        return self.scaled_unit or self.unit

    def label(self, prefix: str = "") -> str:
        """An axis label such as ``"predicted volumetric thermal expansion (10^-6 1/K)"``."""
        text = f"{prefix} {self.display}".strip()
        return f"{text} ({self.axis_unit})"


THERMAL_TARGET = "thermal_expansion"
EXPT_TARGET = "dhf_expt_ev_per_atom"  # expt-dhf: measured formation enthalpy (NBS, NIST-JANAF)
EXPT_RESIDUAL = "residual"  # expt-dhf: experiment minus MP's DFT formation energy per atom
TARGETS: dict[str, Target] = {
    THERMAL_TARGET: Target(THERMAL_TARGET, "volumetric thermal expansion at 300 K", "1/K", 1e-6, "10^-6 1/K"),
    "formation_energy_per_atom": Target("formation_energy_per_atom", "formation energy", "eV/atom"),
    "band_gap": Target("band_gap", "band gap", "eV"),
    EXPT_TARGET: Target(EXPT_TARGET, "measured formation enthalpy at 298 K", "eV/atom"),
    EXPT_RESIDUAL: Target(EXPT_RESIDUAL, "measured formation enthalpy minus MP's DFT formation energy", "eV/atom"),
}
MP_TARGETS: tuple[str, ...] = ("formation_energy_per_atom", "band_gap")

THERMAL_DATASETS: dict[str, str] = {
    "aflow": "AFLOW AGL, AFLOW geometry",
    "aflow+mp-join": "AFLOW AGL labels; AFLOW geometry where present, else MP (mp-cgcnn) structure joined by formula",
}
MP_DATASETS: dict[str, str] = {
    "mp-cgcnn": "Materials Project, CGCNN snapshot (mirror)",
    "mp.2018.6.1": "Materials Project mp.2018.6.1 (figshare 7451351)",
}
AFLOW_SOURCES: tuple[str, ...] = ("auto", "mirror", "live")

THERMAL_SPLIT = (0.6, 0.2, 0.2)  # the CGCNN paper's 6:2:2
MP_SPLIT = (0.8, 0.1, 0.1)  # the federated study's 8:1:1


@dataclass(frozen=True)
class ModelEntry:
    """A model of the study: display name, the graphs it reads, implementation and paper."""

    display: str
    graph_kind: str
    library: str
    reference: str


MODELS: dict[str, ModelEntry] = {
    "cgcnn": ModelEntry("CGCNN", "cgcnn", "mlib", "Xie & Grossman, PRL 120, 145301 (2018)"),
    "gcn": ModelEntry("GCN", "cgcnn", "dgl.nn.GraphConv", "Kipf & Welling, ICLR 2017"),
    "sage": ModelEntry("GraphSAGE", "cgcnn", "dgl.nn.SAGEConv", "Hamilton et al., NeurIPS 2017"),
    "gine": ModelEntry("GINE", "cgcnn", "dgl.nn.GINEConv", "Hu et al., ICLR 2020"),
    "megnet": ModelEntry("MEGNet", "matgl", "matgl 4.1.2 (PyG)", "Chen et al., Chem. Mater. 31, 3564 (2019)"),
    "m3gnet": ModelEntry("M3GNet", "matgl", "matgl 4.1.2 (PyG)", "Chen & Ong, Nat. Comput. Sci. 2, 718 (2022)"),
}
CGCNN_FRAME = {"hidden": 64, "n_conv": 3, "head_hidden": 128, "n_head": 1}  # the CGCNN paper's best setting
# The 92-dim CGCNN atom features: the reference implementation's atom_init.json, or built here from pymatgen's
# element data in the same one-hot layout (29 of 100 elements identical; see 01_data).
ATOM_FEATURE_SOURCES: tuple[str, ...] = ("reference", "pymatgen")
CGCNN_DEFAULTS = {**CGCNN_FRAME, "atom_features": "reference"}
# MEGNet paper, crystal models: 3 blocks, dense 64-32 input and 64-64-32 conv layers, 100 Gaussian
# bond features (width 0.5), 16-dim atom embedding, 2-dim state (zeros for crystals), 5 A cutoff.
MEGNET_DEFAULTS = {
    "cutoff": 5.0,
    "dim_node_embedding": 16,
    "dim_edge_embedding": 100,
    "dim_state_embedding": 2,
    "nblocks": 3,
    "hidden_layer_sizes_input": (64, 32),
    "hidden_layer_sizes_conv": (64, 64, 32),
    "hidden_layer_sizes_output": (32, 16),
    "nlayers_set2set": 1,
    "niters_set2set": 2,
    "gauss_width": 0.5,
    "activation_type": "softplus2",
}
# M3GNet paper: 5 A graph cutoff, 4 A three-body cutoff, max_n = max_l = 3, 3 blocks of 64 units.
M3GNET_DEFAULTS = {
    "cutoff": 5.0,
    "threebody_cutoff": 4.0,
    "max_n": 3,
    "max_l": 3,
    "nblocks": 3,
    "units": 64,
    "dim_node_embedding": 64,
    "dim_edge_embedding": 64,
    "rbf_type": "SphericalBessel",
    "readout_type": "weighted_atom",
    "activation_type": "swish",
}
# Default hyperparameters of each model: GCN, GraphSAGE and GINE sit in the CGCNN frame (and atom features).
MODEL_DEFAULTS: dict[str, dict] = {
    "cgcnn": CGCNN_DEFAULTS,
    "gcn": CGCNN_DEFAULTS,
    "sage": CGCNN_DEFAULTS,
    "gine": CGCNN_DEFAULTS,
    "megnet": MEGNET_DEFAULTS,
    "m3gnet": M3GNET_DEFAULTS,
}

GRAPH_KINDS: tuple[str, ...] = ("cgcnn", "matgl")
# Where a run trains. cuda: matgl's models only (PyG); DGL 1.1.3, which the other four models run on, has no CUDA
# build for torch 2.13.
DEVICES: tuple[str, ...] = ("cpu", "cuda")
RADIUS = 8.0  # A, CGCNN's neighbour radius
MAX_NEIGHBORS = 12  # CGCNN's per-atom neighbour cap
MATGL_CUTOFF = 5.0  # A, MEGNet's and M3GNet's graph cutoff
MAX_Z = 100  # elements with atom features: Z = 1..100
# Geometry that no real crystal has, refused before any neighbour list is made (training data, Flower sites and
# predictions alike). The study's crystals lie far inside (measured on every crystal of aflow and mp-cgcnn): their
# shortest interatomic distance is 0.75 A (H-H, mp-cgcnn; 0.97 A in aflow), their smallest volume 4.8 A^3 per atom,
# and at most 46,500 atom pairs lie within 8 A of a cell. Not one is refused (see the README's "What can go wrong").
MIN_DISTANCE = 0.5  # A: atoms closer than this (the H-H bond, the shortest there is, is 0.74 A)
MIN_VOLUME_PER_ATOM = 1.0  # A^3
MAX_PAIRS = 5_000_000  # atom pairs within the graph radius, estimated from the density (the neighbour list's size)
# Which of the 12th-nearest neighbours an atom keeps when several lie at the same distance: pymatgen's
# neighbour-list order (the reference implementation's stable sort by distance), or the lowest neighbour index.
TIE_ORDERS: tuple[str, ...] = ("pymatgen", "index")

PARTITIONS: dict[str, str] = {
    "iid": "IID: a seeded random deal",
    "chemistry": "disjoint chemistries (most electronegative element)",
    "dirichlet": "Dirichlet(alpha) label skew",
}
ALGORITHMS: dict[str, str] = {"fedavg": "FedAvg", "fedprox": "FedProx"}
BN_MODES: tuple[str, ...] = ("average", "local")
FEDERATION = {"rounds": 20, "local_epochs": 2, "mu": 0.01, "lr": 0.001, "batch_size": 64, "bn": "average"}
TRAINING = {"epochs": 200, "batch_size": 64, "lr": 0.01, "weight_decay": 0.0}  # the CGCNN paper's best setting
# Learning-rate schedules: constant, or the reference implementation's default (lr / 10 from epoch 100 on).
LR_SCHEDULES: tuple[str, ...] = ("constant", "step")
LR_STEP_EPOCH = 100
# Which epoch's weights a run keeps: lowest validation MSE of the standardised target, or lowest validation
# MAE in the target's unit (the reference implementation's choice).
BEST_BY: tuple[str, ...] = ("val_mse", "val_mae")
# a central run's test MAE at its epoch of lowest validation MSE: how a federation's best round is chosen, so the
# column Table 1 divides by and the convergence figure marks
MAE_AS_FEDERATED = "mae (best val MSE)"
# The study's defaults follow the reference implementation; 02_train measures the alternatives against them.
TRAINING_CHOICES = {"lr_schedule": "step", "best_by": "val_mae"}
FINE_TUNE_MODES: tuple[str, ...] = ("frozen", "train")

# The paper's grid: conv layers 2-4, batch and hidden 2^1..2^5 plus 64 (its reported best), lr 1e-1..1e-3.
PAPER_GRID: dict[str, list] = {
    "conv_layers": [2, 3, 4],
    "batch_size": [2, 4, 8, 16, 32, 64],
    "hidden": [2, 4, 8, 16, 32, 64],
    "lr": [0.1, 0.01, 0.001],
}
GRID_DISPLAY = {
    "conv_layers": "conv layers",
    "batch_size": "batch size",
    "hidden": "hidden size",
    "lr": "learning rate",
}
SAMPLERS: tuple[str, ...] = ("grid", "tpe")
PRUNERS: tuple[str, ...] = ("none", "hyperband", "halving", "diverged")

# Notebooks in order, each with the notebooks whose results it reads (the runner checks them first).
NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "01_data": (),
    "02_train": ("01_data",),
    "03_sweep": ("01_data",),
    "03b_composition": ("01_data", "02_train"),
    "04_embed": ("02_train",),
    "04b_models": ("01_data",),
    "05_federated": ("04b_models",),
    "06_transfer": ("02_train", "04b_models", "05_federated"),
    "07_experiment": (),  # pre-trains its own encoders, without the experimental crystals
}


def target(name: str) -> Target:
    """The catalogue entry of a target (unknown names are an error naming the known ones)."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; choose from {sorted(TARGETS)}") from None


def model_name(display: str) -> str:
    """The model a display name names (``GCN`` -> ``gcn``); an unknown one is an error naming the known ones."""
    names = {entry.display: name for name, entry in MODELS.items()}
    if display not in names:
        raise ValueError(f"no model is displayed as {display!r}; known: {sorted(names)}")
    return names[display]


def model_display(name: str) -> str:
    """How figures and tables name a model (``gcn`` -> ``GCN``); unknown names pass through."""
    entry = MODELS.get(name)
    return entry.display if entry else name


def source_display(source: str) -> str:
    """A fine-tuning source of 06_transfer: ``fedavg-band_gap`` -> ``FedAvg on band gap``; ``scratch`` -> ``from scratch``."""
    if source == "scratch":
        return "from scratch"
    pretraining, _, pretrained_on = source.partition("-")
    return f"{algorithm_display(pretraining)} on {target(pretrained_on).display}"


def data_label(name: str, crystals: int) -> str:
    """How tables and captions name a set of crystals: ``mp-cgcnn, 36,736 crystals``."""
    return f"{name}, {crystals:,} crystals"


def algorithm_display(name: str) -> str:
    """``fedavg`` -> ``FedAvg``; ``central`` and unknown names pass through."""
    return ALGORITHMS.get(name, name)
