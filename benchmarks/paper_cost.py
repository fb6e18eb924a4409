"""What the `paper` profile costs on CPU: core-hours per notebook, projected from measured training speeds.

    .venv/bin/python benchmarks/paper_cost.py      # after benchmarks/models.py and benchmarks/train_speed.py

No GPU path exists: DGL publishes no CUDA build for the pinned torch 2.13 (and DGL 2.x cannot load with it),
so the `paper` profile's settings (every crystal of mp.2018.6.1, 300 epochs, the exhaustive sweep) run on
CPU cores. This script multiplies, for each notebook, the training crystal-epochs the `paper` profile asks
for (the `paper` profile's parameters of each notebook) by the measured seconds per crystal-epoch of each model
(results/benchmarks/models.csv: one thread, mp-cgcnn crystals; train_speed.csv: CGCNN on aflow, two
threads, counted as two cores). Evaluation, featurisation and the MP-sized CGCNN (measured on the smaller
AFLOW crystals only, scaled here by atoms per crystal) make the real cost somewhat higher: a projection,
labelled as such. Writes results/benchmarks/paper_cost.csv (and .md for the README).
"""

from __future__ import annotations

import argparse

import pandas as pd

from mlib import params, profiles
from mlib.paths import RESULTS_DIR

BENCH = RESULTS_DIR / "benchmarks"
TRAIN_FRACTION = 0.6
MP_CRYSTALS = {"mp.2018.6.1": 69_239, "mp-cgcnn": 36_737}  # the data sets' sizes (01_data, the paper)
THERMAL_CRYSTALS = 5_261  # aflow from the mirror (01_data); the live AGL set is about as large
ATOMS_PER_CRYSTAL = {"aflow": 9.9, "mp": 25.8}  # means of 01_data's graph summary


def core_seconds_per_crystal_epoch() -> dict[str, float]:
    """Measured training cost per crystal and epoch, in core-seconds (threads x seconds)."""
    models = pd.read_csv(BENCH / "models.csv").set_index("model")
    cost = {m: row["threads"] / row["train crystals/s"] for m, row in models.iterrows()}
    speed = pd.read_csv(BENCH / "train_speed.csv")
    fast = speed[speed["convolution"].str.startswith("fast")].iloc[0]
    cost["cgcnn (aflow)"] = fast["threads"] / fast["train crystals/s"]
    scaled = cost["cgcnn (aflow)"] * ATOMS_PER_CRYSTAL["mp"] / ATOMS_PER_CRYSTAL["aflow"]
    cost["cgcnn (mp)"] = cost.pop("cgcnn", scaled)  # measured on MP crystals by models.py where it has run
    return cost


def paper_params(notebook: str) -> params.NotebookParams:
    """A notebook's parameters in the paper profile (the runner's paths filled with placeholders)."""
    values = {**profiles.notebook_params("paper", notebook, {}), "out_dir": "-", "store_dir": "-"}
    return params.build(notebook, values)


def projection() -> pd.DataFrame:
    cost = core_seconds_per_crystal_epoch()
    thermal_train = THERMAL_CRYSTALS * TRAIN_FRACTION
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

    p = paper_params("02_train")
    runs = len(p.seeds) + len(set(p.ensemble_seeds) - {p.seed}) + len(p.compare) * len(p.compare_seeds)
    add("02_train", f"{runs} thermal runs x {p.epochs} epochs", runs * p.epochs * thermal_train, "cgcnn (aflow)")
    mp_train = MP_CRYSTALS[p.mp_dataset] * TRAIN_FRACTION
    add("02_train", f"MP {p.mp_target}, {p.mp_epochs} epochs", p.mp_epochs * mp_train, "cgcnn (mp)")
    p = paper_params("03_sweep")
    grid = p.space().size()
    add(
        "03_sweep",
        f"exhaustive grid, {grid} configurations x {p.epochs} epochs",
        grid * p.epochs * thermal_train,
        "cgcnn (aflow)",
    )
    runs = len(p.final_seeds) + len(p.curve_sizes)  # the sweep's best on every split, the curve's sizes
    add("03_sweep", f"final model and learning curve ({runs} runs)", runs * p.epochs * thermal_train, "cgcnn (aflow)")
    p = paper_params("03b_composition")
    crabnet_train = 3_240  # CrabNet's train formulas matched to AFLOW (03b_composition's mapping table)
    add(
        "03b_composition",
        f"CGCNN on CrabNet's split x {len(p.seeds)} seeds",
        len(p.seeds) * p.epochs * crabnet_train,
        "cgcnn (aflow)",
    )
    p, f = paper_params("04b_models"), paper_params("05_federated")
    train = MP_CRYSTALS[p.dataset] * TRAIN_FRACTION
    on_mp = {"cgcnn": "cgcnn (mp)"}  # the cost row of a model on MP crystals
    for model in p.models:
        runs = len(p.targets) * len(p.seeds)
        what = f"{model}: {len(p.targets)} targets x {len(p.seeds)} seeds x {p.epochs} epochs"
        add("04b_models", what, runs * p.epochs * train, on_mp.get(model, model))
        epochs, runs = f.rounds * f.local_epochs, len(f.algorithms) * len(f.targets) * len(f.seeds)
        what = f"{model}: {len(f.algorithms)} algorithms x {len(f.targets)} targets x {len(f.seeds)} seeds x {epochs} epochs"
        add("05_federated", what, runs * epochs * train, on_mp.get(model, model))
    grid = len(f.fedprox_partitions) * len(f.fedprox_seeds) * (1 + len(f.fedprox_mus))  # FedAvg and each mu
    epochs = f.rounds * sum(f.fedprox_local_epochs)  # one run per local-epochs setting
    what = (
        f"FedProx grid, {f.compare_model}: {len(f.fedprox_partitions)} partitions x {len(f.fedprox_seeds)} seeds x "
        f"{1 + len(f.fedprox_mus)} (FedAvg, mu) x {f.rounds} rounds x local epochs {f.fedprox_local_epochs}"
    )
    add("05_federated", what, grid * epochs * train, on_mp.get(f.compare_model, f.compare_model))
    p = paper_params("06_transfer")
    sizes = sum(thermal_train if n is None else n for n in p.sizes)
    encoders = len(p.pretrain_targets) * (len(p.algorithms) + int(p.central))
    runs = (1 + encoders * len(p.modes)) * len(p.seeds)  # scratch, and every encoder in every mode
    for model in p.models:
        what = (
            f"{model}: (scratch + {encoders} encoders x {len(p.modes)} modes) x {len(p.sizes)} sizes x "
            f"{len(p.seeds)} seeds x {p.epochs} epochs"
        )
        add("06_transfer", what, runs * sizes * p.epochs, "cgcnn (aflow)" if model == "cgcnn" else model)
    return pd.DataFrame(rows)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    table = projection()
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
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    BENCH.mkdir(parents=True, exist_ok=True)
    summary.to_csv(BENCH / "paper_cost.csv", index=False)
    caption = (
        f"Projected CPU cost of the paper profile (training only, from measured speeds; {totals.sum():,.0f} "
        f"core-hours: about {totals.sum() / 16 / 24:.1f} days on 16 cores)"
    )
    (BENCH / "paper_cost.md").write_text(f"**{caption}**\n\n{summary.to_markdown(index=False, floatfmt='.3g')}\n")
    print(caption)
    print(totals.round(1).to_string())


if __name__ == "__main__":
    main()
