"""What a profile costs on CPU (the `paper` profile by default): core-hours per notebook, projected from measured
training speeds.

    .venv/bin/python benchmarks/profile_cost.py [--profile cpu]   # after benchmarks/models.py and train_speed.py

No GPU path exists: DGL publishes no CUDA build for the pinned torch 2.13 (and DGL 2.x cannot load with it),
so the `paper` profile's settings (every crystal of mp.2018.6.1, 300 epochs, the exhaustive sweep) run on
CPU cores. This script multiplies, for each notebook, the training crystal-epochs the `paper` profile asks
for (the `paper` profile's parameters of each notebook; data set sizes from the tables 01_data and
03b_composition published) by the measured seconds per crystal-epoch of each model
(results/benchmarks/models.csv: one thread, mp-cgcnn crystals; train_speed.csv: CGCNN on aflow, two
threads, counted as two cores). Evaluation and featurisation make the real cost somewhat higher: a projection,
labelled as such; early stopping (``patience``) and the sweep's pruning make it lower: an upper bound for
training. Where the profile's own 04b runs have finished (results/<profile>/store/04b_models), their measured
wall seconds (one-thread workers, over every sitting of a resumed run) over the projection of the same run give each model's ratio of real to
projected cost (per-epoch batching, validation passes and two workers sharing the memory bandwidth), and a
calibrated column applies it to that model's rows. Fine-tuning with a frozen encoder trains the head on stored crystal vectors
(benchmarks/frozen_finetune.py: ~30x faster per epoch than the whole model) and is left out. Writes results/benchmarks/<profile>_cost.csv (and .md for the README).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd

from mlib import catalogue, params, profiles, published, store_paths
from mlib.outputs import write_table
from mlib.paths import RESULTS_DIR

BENCH = RESULTS_DIR / "benchmarks"
TRAIN_FRACTION = catalogue.THERMAL_SPLIT[0]


def published_result(profile: str, notebook: str, name: str) -> pd.DataFrame:
    """A table a notebook published: the profile's own, else the cpu profile's (the data sets' sizes are the
    mirror's there; the live AFLOW set of the paper profile is about as large)."""
    for folder in dict.fromkeys((profile, "cpu")):
        path = RESULTS_DIR / folder / notebook / f"{name}.csv"
        if path.exists():
            return pd.read_csv(path)
    raise SystemExit(f"{path} does not exist: run `make reproduce PROFILE=cpu ARGS='--only {notebook}'` first")


def data_sizes(profile: str) -> pd.DataFrame:
    """Crystals and mean atoms per crystal of each data set, from 01_data's graph summary; mp.2018.6.1, where no
    profile has featurised it, at its published size with mp-cgcnn's atoms per crystal."""
    sizes = published_result(profile, "01_data", "graph_summary").set_index("dataset")
    sizes = sizes[["crystals", "atoms/crystal (mean)"]].astype(float)
    name = published.MP_2018_DATASET["name"]
    if name not in sizes.index:
        sizes.loc[name] = [published.MP_2018_DATASET["crystals"], sizes.loc["mp-cgcnn", "atoms/crystal (mean)"]]
    return sizes


def core_seconds_per_crystal_epoch(profile: str) -> dict[str, float]:
    """Measured training cost per crystal and epoch, in core-seconds (threads x seconds)."""
    models = pd.read_csv(BENCH / "models.csv").set_index("model")
    cost = {m: row["threads"] / row["train crystals/s"] for m, row in models.iterrows()}
    speed = pd.read_csv(BENCH / "train_speed.csv")
    fast = speed[speed["convolution"].str.startswith("fast")].iloc[0]
    cost["cgcnn (aflow)"] = fast["threads"] / fast["train crystals/s"]
    atoms = data_sizes(profile)["atoms/crystal (mean)"]
    scaled = cost["cgcnn (aflow)"] * atoms["mp-cgcnn"] / atoms["aflow"]
    cost["cgcnn (mp)"] = cost.pop("cgcnn", scaled)  # measured on MP crystals by models.py where it has run
    return cost


ON_MP = {"cgcnn": "cgcnn (mp)"}  # the cost row of a model on MP crystals


def measured_ratios(profile: str) -> dict[str, float]:
    """Per model: median over the profile's finished 04b runs (any group but matgl 1.0.0's) of measured seconds /
    projected seconds."""
    cost = core_seconds_per_crystal_epoch(profile)
    ratios: dict[str, list[float]] = {}
    for path in sorted((RESULTS_DIR / profile / "store" / "04b_models").rglob("seed*/run.json")):
        if store_paths.MATGL_1 in path.parts:  # another version's code and speed
            continue
        record = json.loads(path.read_text())["record"]
        model = path.parts[-4]
        epochs = record.get("timed_epochs")  # older records timed only a resumed run's last sitting: not used
        if not epochs:
            continue
        projected = record["train"] * epochs * cost[ON_MP.get(model, model)]
        ratios.setdefault(ON_MP.get(model, model), []).append(record["seconds"] / projected)
    return {model: float(np.median(values)) for model, values in ratios.items()}


def profile_params(profile: str, notebook: str) -> params.NotebookParams:
    """A notebook's parameters in a profile (the runner's paths filled with placeholders)."""
    values = {**profiles.notebook_params(profile, notebook, {}), "out_dir": "-", "store_dir": "-"}
    return params.build(notebook, values)


def first(crystals: float, limit: int | None) -> float:
    """A data set's crystals cut to its first ``limit`` (None: all)."""
    return min(crystals, limit or math.inf)


def mp_train(p: params.MPStudyParams, model: str, crystals: pd.Series) -> float:
    """Training crystals of a model in 04b/05: the data set, cut to ``limit`` or the model's own limit."""
    limit = min((n for n in (p.limit, (p.model_limits or {}).get(model)) if n is not None), default=None)
    return first(crystals[p.dataset], limit) * catalogue.MP_SPLIT[0]


def projection(profile: str = "paper") -> pd.DataFrame:
    cost = core_seconds_per_crystal_epoch(profile)
    crystals = data_sizes(profile)["crystals"]
    rows = []

    def add(notebook: str, what: str, crystal_epochs: float, model: str) -> None:
        rows.append(
            {
                "notebook": notebook,
                "what": what,
                "model": model,
                "training crystal-epochs": crystal_epochs,
                "core-hours (projected)": crystal_epochs * cost[model] / 3600,
            }
        )

    p = profile_params(profile, "02_train")
    thermal_train = first(crystals["aflow"], p.thermal_limit) * TRAIN_FRACTION
    ensembles = sum(len(set(p.ensemble_seeds) | {s}) for s in p.seeds)  # a split's own run plus its other members
    runs = ensembles + len(p.compare) * len(p.compare_seeds)
    add("02_train", f"{runs} thermal runs x {p.epochs} epochs", runs * p.epochs * thermal_train, "cgcnn (aflow)")
    atoms = data_sizes(profile)["atoms/crystal (mean)"]
    for model in p.architectures:  # measured on MP crystals, scaled to AFLOW's by atoms per crystal
        cost[f"{model} (aflow)"] = cost[model] * atoms["aflow"] / atoms["mp-cgcnn"]
        runs = len(p.architecture_lrs) + len(p.splits_of(model)) - 1
        what = f"{model}: {runs} thermal runs x {p.epochs} epochs at most (early stopping)"
        add("02_train", what, runs * p.epochs * thermal_train, f"{model} (aflow)")
    mp = first(crystals[p.mp_dataset], p.mp_limit) * TRAIN_FRACTION
    add("02_train", f"MP {p.mp_target}, {p.mp_epochs} epochs", p.mp_epochs * mp, "cgcnn (mp)")
    p = profile_params(profile, "03_sweep")
    trials = p.space().size() if p.sampler == "grid" or p.n_trials is None else min(p.n_trials, p.space().size())
    what = "exhaustive grid" if p.sampler == "grid" else f"{p.sampler} search, at most (pruning cuts it)"
    add(
        "03_sweep",
        f"{what}: {trials} configurations x {p.epochs} epochs",
        trials * p.epochs * thermal_train,
        "cgcnn (aflow)",
    )
    runs = len(p.final_seeds) + len(p.curve_sizes)  # the sweep's best on every split, the curve's sizes
    add("03_sweep", f"final model and learning curve ({runs} runs)", runs * p.epochs * thermal_train, "cgcnn (aflow)")
    p = profile_params(profile, "03b_composition")
    mapping = published_result(profile, "03b_composition", "crabnet_mapping").set_index("outcome")
    crabnet_train = mapping.loc["matched", "train"]  # CrabNet's train formulas matched to AFLOW
    add(
        "03b_composition",
        f"CGCNN on CrabNet's split x {len(p.seeds)} seeds",
        len(p.seeds) * p.epochs * crabnet_train,
        "cgcnn (aflow)",
    )
    t = profile_params(profile, "02_train")
    if p.best_architecture and t.architectures:  # which is best is known after 02: the costliest, an upper bound
        model = max(t.architectures, key=lambda m: cost[f"{m} (aflow)"])
        what = f"{model} (02's costliest architecture, at most) on CrabNet's split x {len(p.seeds)} seeds"
        add("03b_composition", what, len(p.seeds) * p.epochs * crabnet_train, f"{model} (aflow)")
    p, f = profile_params(profile, "04b_models"), profile_params(profile, "05_federated")
    on_mp = ON_MP
    for model in p.models:
        runs = len(p.targets) * len(p.seeds_for(model))
        what = f"{model}: {len(p.targets)} targets x {len(p.seeds_for(model))} seeds x {p.epochs} epochs"
        add("04b_models", what, runs * p.epochs * mp_train(p, model, crystals), on_mp.get(model, model))
        if model in (p.all_crystals or {}):  # the headline runs on every crystal, the model's first seed
            every = first(crystals[p.dataset], p.limit) * catalogue.MP_SPLIT[0]
            targets = p.all_crystals[model]
            what = f"{model}: every crystal, {len(targets)} target(s) x 1 seed x {p.epochs} epochs"
            add("04b_models", what, len(targets) * p.epochs * every, on_mp.get(model, model))
        algorithms, seeds = f.algorithms_for(model), f.seeds_for(model)
        epochs, runs = f.rounds * f.local_epochs, len(algorithms) * len(f.targets) * len(seeds)
        what = (
            f"{model}: {len(algorithms)} algorithms x {len(f.targets)} targets x {len(seeds)} seeds x {epochs} epochs"
        )
        add("05_federated", what, runs * epochs * mp_train(f, model, crystals), on_mp.get(model, model))
    grid = len(f.fedprox_partitions) * len(f.fedprox_seeds) * (1 + len(f.fedprox_mus))  # FedAvg and each mu
    epochs = f.rounds * sum(f.fedprox_local_epochs)  # one run per local-epochs setting
    model = f.compare_model
    grid_train = min(mp_train(f, model, crystals), (f.fedprox_limit or math.inf) * catalogue.MP_SPLIT[0])
    what = (
        f"FedProx grid, {f.compare_model}: {len(f.fedprox_partitions)} partitions x {len(f.fedprox_seeds)} seeds x "
        f"{1 + len(f.fedprox_mus)} (FedAvg, mu) x {f.rounds} rounds x local epochs {f.fedprox_local_epochs}"
        + (f", first {f.fedprox_limit:,} crystals" if f.fedprox_limit else "")
    )
    add("05_federated", what, grid * epochs * grid_train, on_mp.get(model, model))
    p = profile_params(profile, "06_transfer")
    thermal_train = first(crystals["aflow"], p.thermal_limit) * TRAIN_FRACTION
    sizes = sum(thermal_train if n is None else n for n in p.sizes)
    encoders = len(p.pretrain_targets) * (len(p.algorithms) + int(p.central))
    trained = [m for m in p.modes if m != "frozen"]  # a frozen encoder trains its head on stored vectors: ~free
    runs = (1 + encoders * len(trained)) * len(p.seeds)  # scratch, and every encoder trained
    for model in p.models:
        what = (
            f"{model}: (scratch + {encoders} encoders trained) x {len(p.sizes)} sizes x "
            f"{len(p.seeds)} seeds x {p.epochs} epochs (frozen encoders: head only, not counted)"
        )
        add("06_transfer", what, runs * sizes * p.epochs, "cgcnn (aflow)" if model == "cgcnn" else model)
    if p.on_02_splits is not None:  # CGCNN and 02's best other architecture fine-tuned on 02's splits
        t = profile_params(profile, "02_train")
        train = first(crystals["aflow"], t.thermal_limit) * TRAIN_FRACTION
        what = f"cgcnn: fine-tuned on 02_train's {len(t.seeds)} splits x {t.epochs} epochs"
        add("06_transfer", what, len(t.seeds) * t.epochs * train, "cgcnn (aflow)")
        if t.architectures:  # which one is best is known after 02: the costliest counted, an upper bound
            model = max(t.architectures, key=lambda m: cost[f"{m} (aflow)"])
            what = f"{model} (02's costliest architecture, at most): fine-tuned on {len(t.splits_of(model))} splits"
            add("06_transfer", what, len(t.splits_of(model)) * t.epochs * train, f"{model} (aflow)")
    p = profile_params(profile, "07_experiment")
    measured = experimental_crystals()
    pretrain = (first(crystals["mp-cgcnn"], p.mp_limit) - measured) * catalogue.MP_SPLIT[0]
    pool = measured * 0.8 * 0.8  # 80:20 split, a fifth of the 80 % the validation pool
    sizes = sum(pool if n is None else min(n, pool) for n in p.sizes)
    encoders = 1 + len(p.algorithms)  # central and each federated algorithm
    trained = len([m for m in p.modes if m != "frozen"]) + int(p.residual)
    runs = (1 + encoders * trained) * len(p.splits) * len(p.seeds)
    for model in p.models:
        cost_row = ON_MP.get(model, model)
        add("07_experiment", f"{model}: pre-training x {encoders} ({p.rounds * p.local_epochs} epochs, experimental "
            "ids held out)", encoders * p.rounds * p.local_epochs * pretrain, cost_row)  # fmt: skip
        what = (
            f"{model}: (scratch + {encoders} encoders x {trained} trained) x {len(p.sizes)} sizes x {len(p.splits)} "
            f"splits x {len(p.seeds)} seeds x {p.epochs} epochs (frozen encoders: head only, not counted)"
        )
        add("07_experiment", what, runs * sizes * p.epochs, cost_row)
    return pd.DataFrame(rows)


def experimental_crystals() -> int:
    """The measured formation enthalpies joined to an mp-cgcnn structure of the same composition (07's crystals
    before graphs are built)."""
    from mlib import datasets

    return len(datasets.expt_dhf_joined()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="paper", choices=profiles.names(), help="the profile to project")
    args = parser.parse_args()
    table = projection(args.profile)
    ratios = measured_ratios(args.profile)
    for model in list(ratios):  # a model's speed on AFLOW crystals is calibrated by its runs on MP (CGCNN: its own)
        if model in catalogue.MODELS:
            ratios[f"{model} (aflow)"] = ratios[model]
    calibrated = table["core-hours (projected)"] * table["model"].map(ratios).fillna(1.0)
    if ratios:
        table["measured / projected"] = table["model"].map(ratios)
        table["core-hours (calibrated)"] = calibrated
    totals = table.groupby("notebook", sort=False)["core-hours (projected)"].sum()
    summary = pd.concat(
        [
            table,
            pd.DataFrame(
                [
                    {
                        "notebook": "all",
                        "what": "total",
                        "model": "",
                        "training crystal-epochs": table["training crystal-epochs"].sum(),
                        "core-hours (projected)": totals.sum(),
                        **({"core-hours (calibrated)": calibrated.sum()} if ratios else {}),
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    cores = profile_params(args.profile, "04b_models").workers  # one-thread training workers, one per core
    caption = (
        f"Projected CPU cost of the {args.profile} profile (training only, from measured speeds; "
        f"{totals.sum():,.0f} core-hours: about {totals.sum() / cores:,.1f} hours on {cores} cores"
        + (
            f"; calibrated by {', '.join(sorted(r for r in ratios if '(aflow)' not in r))} runs that finished: {calibrated.sum():,.0f} core-hours, "
            f"about {calibrated.sum() / cores:,.1f} hours; models without a finished run counted as projected)"
            if ratios
            else ")"
        )
    )
    write_table(BENCH, f"{args.profile}_cost", summary, caption, ".3g")
    print(caption)
    print(totals.round(1).to_string())


if __name__ == "__main__":
    main()
