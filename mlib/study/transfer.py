"""06_transfer: from pre-training to few data: a pre-trained encoder with a new head, fine-tuned on N crystals.

The encoder (everything before the crystal vector) comes from a model trained on MP, centrally
(04b_models) or federatedly (05_federated), read from the run store; the head is re-initialised. Every N
uses the same test (and validation pool) split of the target data set; the N training crystals are
drawn from its training split with the run's seed, and the validation set shrinks with N in the 6:2
ratio of the full split (at least 10 crystals), as a user with N labelled crystals would have. Each
point of a learning curve is a run of the store: ``<store>/06_transfer/<source>/<mode>/n<N>/seed<k>/``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from mlib import catalogue, datasets, model_file, plots, provenance, store
from mlib.catalogue import THERMAL_TARGET
from mlib.graphs.featurize import GraphSet
from mlib.models.registry import build_model, graph_spec
from mlib.outputs import Run, mean_std
from mlib.parallel import run_jobs
from mlib.params import FineTune, TrainConfig, TransferParams
from mlib.study import federated, models
from mlib.training import fit_regressor, split_indices

NOTEBOOK = "06_transfer"


class EncoderMismatch(ValueError):
    """A pre-trained model cannot provide the encoder of the model being fine-tuned."""


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's head."""
    head = {id(p) for m in model.head_modules() for p in [*m.parameters(), *m.buffers()]}
    return {k for k, v in model.state_dict(keep_vars=True).items() if id(v) in head}


def load_encoder(model: nn.Module, path: Path) -> list[str]:
    """Copy the encoder weights of a model file into ``model``; returns the keys loaded."""
    saved = model_file.read(Path(path))
    if saved["name"] != model.name or store.canonical(saved["hyper"]) != store.canonical(model.hyper):
        raise EncoderMismatch(f"{path} holds {saved['name']} {saved['hyper']}, not {model.name} {model.hyper}")
    skip = head_keys(model)
    encoder = {k: v for k, v in saved["state"].items() if k not in skip}
    missing = set(model.state_dict()) - skip - set(encoder)
    if missing:
        raise EncoderMismatch(f"{path} lacks encoder weights {sorted(missing)[:3]} ...")
    model.load_state_dict(encoder, strict=False)
    return sorted(encoder)


def transfer_split(n_total: int, n_train: int | None, seed: int, split_seed: int = 0) -> dict[str, np.ndarray]:
    """The fixed 6:2:2 split (``split_seed``) with ``n_train`` training crystals drawn by ``seed`` (None: all)."""
    full = split_indices(n_total, split_seed)
    if n_train is None or n_train >= len(full["train"]):
        return full
    rng = np.random.default_rng(seed)
    n_val = min(len(full["val"]), max(10, n_train // 3))
    return {
        "train": np.sort(rng.choice(full["train"], n_train, replace=False)),
        "val": np.sort(rng.choice(full["val"], n_val, replace=False)),
        "test": full["test"],
    }


def fine_tune_run(
    model: str,
    hyper: dict,
    graph_set: GraphSet,
    target: str,
    n_train: int | None,
    seed: int,
    encoder: str | None,
    fine_tune: FineTune | None,
    config: TrainConfig,
    store_root: Path,
    source: str,
) -> dict:
    """One point of the learning curve (or the store's finished run with the same key)."""
    mode = fine_tune.encoder if fine_tune else "scratch"
    folder = Path(store_root) / NOTEBOOK / source / mode / f"n{n_train or 'all'}" / f"seed{seed}"
    graph_set = graph_set.with_finite(target)
    split = transfer_split(len(graph_set), n_train, seed)
    path = Path(store_root) / encoder if encoder else None

    def build() -> nn.Module:
        net = build_model(model, **hyper)
        if path is not None:
            load_encoder(net, path)
        return net

    extra = {"encoder": {"file": encoder, "sha256": provenance.file_digest(path)} if path else None}
    result = fit_regressor(
        build,
        graph_set,
        target,
        replace(config, seed=seed),
        folder,
        resume=False,
        show=False,
        split=split,
        fine_tune=fine_tune,
        key_extra=extra,
    )
    return {
        "source": source,
        "mode": mode,
        "n_train": len(split["train"]),
        "n": n_train or "all",
        "seed": seed,
        "test": len(split["test"]),
        **{k: result.metrics[k] for k in ("mae", "rmse", "r2", "pearson_r")},
        "epochs": len(result.history),
        "seconds": result.seconds,
    }


def _job(graph_set: GraphSet, *args) -> dict:
    return fine_tune_run(*args[:2], graph_set, *args[2:])


def learning_curves(
    model: str,
    hyper: dict,
    graph_set: GraphSet,
    target: str,
    sizes: list[int | None],
    seeds: list[int],
    encoders: dict[str, str],
    modes: list[FineTune],
    config: TrainConfig,
    store_root: Path,
    workers: int = 1,
) -> pd.DataFrame:
    """Test metrics for every N, seed and source: ``scratch`` plus each pre-trained encoder x fine-tune mode.

    ``encoders`` maps a source label (``fedavg-band_gap``) to a model file, relative to the store.
    """
    jobs = [(model, hyper, target, n, s, None, None, config, Path(store_root), "scratch") for n in sizes for s in seeds]
    jobs += [
        (model, hyper, target, n, s, path, mode, config, Path(store_root), source)
        for source, path in encoders.items()
        for mode in modes
        for n in sizes
        for s in seeds
    ]
    return pd.DataFrame(run_jobs(_job, jobs, graph_set, workers, desc="fine-tuning runs"))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """MAE and Pearson R, mean ± std over seeds, per source, mode and N."""
    unit = catalogue.target(THERMAL_TARGET).unit
    rows = []
    for (source, mode, n), group in runs.groupby(["source", "mode", "n_train"], sort=False):
        rows.append(
            {
                "source": source,
                "mode": mode,
                "N": n,
                "seeds": len(group),
                f"MAE ({unit})": mean_std(group["mae"]),
                "Pearson R": mean_std(group["pearson_r"]),
            }
        )
    return pd.DataFrame(rows)


def where_pretraining_stops_helping(runs: pd.DataFrame, margin: float = 0.0) -> pd.DataFrame:
    """For each pre-trained source and mode, the relative gain in mean test MAE over scratch and the
    smallest N from which on it is no better than scratch.

    Pre-training helps at an N when its relative gain exceeds ``margin`` and the MAE difference exceeds its
    standard error over seeds (a gain inside seed-to-seed noise does not count; one seed: no noise estimate).
    """
    stats = runs.groupby(["source", "mode", "n_train"])["mae"].agg(["mean", "var", "count"])
    scratch = stats.xs(("scratch", "scratch"), level=("source", "mode"))
    rows = []
    for (source, mode), curve in stats.groupby(level=["source", "mode"]):
        if source == "scratch":
            continue
        curve = curve.droplevel(["source", "mode"]).sort_index()
        base = scratch.reindex(curve.index)
        gain = 1 - curve["mean"] / base["mean"]
        noise = np.sqrt((curve["var"] / curve["count"]).fillna(0) + (base["var"] / base["count"]).fillna(0))
        helps = (gain > margin) & (base["mean"] - curve["mean"] > noise)
        if not helps.any():
            verdict = "never helped beyond seed noise"
        elif helps.iloc[-1]:
            verdict = f"still helps at N = {int(gain.index[-1])}"
        else:
            verdict = f"N = {int(gain.index[helps.to_numpy().nonzero()[0][-1] + 1])}"
        rows.append(
            {
                "source": source,
                "mode": mode,
                "best relative MAE gain": float(gain.max()),
                "at N": int(gain.idxmax()),
                "helps beyond noise at N": ", ".join(str(int(n)) for n in gain.index[helps]) or "none",
                "stops helping from": verdict,
            }
        )
    return pd.DataFrame(rows)


def encoders(P: TransferParams) -> dict[str, str]:
    """Source label -> pre-trained model file (relative to the store) of 05_federated's and 04b_models' runs.

    Each must be a finished run of the store; a missing one names the notebook to run first.
    """
    runs = store.Store(P.store_dir)
    out = {}
    for target in P.pretrain_targets:
        for algorithm in P.algorithms:
            folder = federated.run_folder(runs.root, P.partition, algorithm, P.model, target, P.pretrain_seed)
            runs.record(folder, federated.NOTEBOOK)
            out[f"{algorithm}-{target}"] = str((folder / "model.pt").relative_to(runs.root))
        if P.central:
            folder = models.run_folder(runs.root, P.model, target, P.pretrain_seed)
            runs.record(folder, models.NOTEBOOK)
            out[f"central-{target}"] = str((folder / "model.pt").relative_to(runs.root))
    return out


def prepare(P: TransferParams) -> tuple[GraphSet, dict[str, str], str]:
    """The thermal graphs the model reads, the pre-trained encoders, and the caption fragment."""
    graphs = datasets.load_thermal(
        P.dataset, spec=graph_spec(P.model, **(P.model_hyper or {})), workers=P.workers
    ).graphs.first(P.thermal_limit)
    return graphs, encoders(P), f"{catalogue.model_display(P.model)} on {graphs.label}"


def curves(P: TransferParams, run: Run, graphs: GraphSet, sources: dict[str, str], where: str) -> pd.DataFrame:
    """Every fine-tuning run; the learning-curve table and figure."""
    config = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr)
    modes = [FineTune(mode, P.encoder_lr_scale) for mode in P.modes]
    runs = learning_curves(
        P.model,
        P.model_hyper or {},
        graphs,
        THERMAL_TARGET,
        P.sizes,
        P.seeds,
        sources,
        modes,
        config,
        Path(P.store_dir),
        P.workers,
    )
    run.save_table(runs, "runs", f"Every fine-tuning run: {where}", markdown=False)
    run.save_table(
        summarise(runs), "learning_curve", f"Test MAE and Pearson R (mean ± std over seeds {P.seeds}) by N: {where}"
    )
    run.save_figure(
        plots.transfer_curves(runs, THERMAL_TARGET, where),
        "learning_curve",
        f"Test MAE against the number of training crystals, {where}",
    )
    return runs


def verdict(run: Run, runs: pd.DataFrame, where: str) -> pd.DataFrame:
    """Where pre-training helps beyond seed noise, by how much, and where it stops."""
    return run.save_table(
        where_pretraining_stops_helping(runs),
        "pretraining_gain",
        f"Relative MAE gain over scratch and the N where it ends: {where}",
    )
