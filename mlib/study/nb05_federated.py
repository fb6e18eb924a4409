"""05_federated: models x targets x algorithms x seeds, a central baseline, partitions compared.

Every federated run is a run of the store, ``<store>/05_federated/<partition>/<algorithm>/<model>/<target>/
seed<k>/``, resumed after an interruption from the last round its ``last.pt`` holds (same key only), with the
global model of its best round (``model.pt``, the study's model file format), its per-round ``history.csv``, ``rounds.csv`` (each client's status every round), ``clients.csv``,
``predictions.csv`` and ``run.json``; a finished run with the same key is read back. The data split is
the 8:1:1 split of 04b_models for the same seed, so the central baseline (rounds x local epochs epochs)
sees the same crystals; it is read from 04b_models' runs when their key matches, else trained under
``<store>/05_federated/central/``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from mlib import catalogue, model_file, plots, published, store, store_paths
from mlib.catalogue import MP_SPLIT
from mlib.federated.partition import anion_elements, describe, partition
from mlib.federated.simulation import Federation
from mlib.graphs.featurize import GraphSet
from mlib.models.registry import build_model
from mlib.outputs import FALSE_DISCOVERY_RATE, Run, count_verdicts, mean_std, paired_p, with_verdicts
from mlib.parallel import run_jobs
from mlib.params import FedConfig, FederatedParams, TrainConfig
from mlib.study import nb04b_models as central_study
from mlib.training import fit_regressor, model_key, read_checkpoint, split_indices

NOTEBOOK = store_paths.FEDERATED
METRICS = ("mse", "rmse", "mae", "r2")


def shards_for(
    graph_set: GraphSet, target: str, seed: int, scheme: str, clients: int, alpha: float
) -> tuple[dict, list]:
    """The seeded 8:1:1 split and the partition of its training crystals among ``clients``."""
    split = split_indices(len(graph_set), seed, MP_SPLIT)
    chemistry = anion_elements(graph_set.table["formula"]) if scheme == "chemistry" else None
    shards = partition(
        split["train"], clients, scheme, seed, chemistry=chemistry, target=graph_set.target(target).numpy(), alpha=alpha
    )
    return split, shards


def run_federated(
    model: str,
    hyper: dict,
    graph_set: GraphSet,
    target: str,
    config: FedConfig,
    scheme: str,
    clients: int,
    alpha: float,
    store_root: Path,
    group: str = "",
    folder: Path | None = None,
) -> tuple[dict, pd.DataFrame]:
    """One federated run (or the store's finished run with the same key): a summary row and the per-round history
    (``folder``: another notebook's run folder, for a federation that notebook runs)."""
    if folder is None:
        folder = store_paths.federated_run(store_root, scheme, config.algorithm, model, target, config.seed, group)
    graph_set = graph_set.with_finite(target)
    key = {
        "model": model_key(model, hyper),
        "config": config.key(),
        "clients": clients,
        "partition": scheme,
        "alpha": alpha,
        "data": graph_set.data_key(target),
        "graph": model_file.graph_info(graph_set.spec),
    }
    runs = store.Store(store_root)
    opened = runs.open(folder, key, read_checkpoint)  # another run's rounds are never continued
    if opened.finished:
        return opened.record, store.read_csv(folder / "history.csv")
    saved = opened.checkpoint
    checkpoint = folder / store.CHECKPOINT
    split, shards = shards_for(graph_set, target, config.seed, scheme, clients, alpha)
    earlier = saved.get("seconds", 0.0) if saved is not None else 0.0  # wall seconds of earlier sittings
    start = time.perf_counter()
    federation = Federation(
        lambda: build_model(model, **hyper), graph_set.graphs, graph_set.target(target), split, shards, config
    )
    if saved is not None:
        federation.restore(saved["federation"])
    history = federation.run(
        show=False,
        on_round=lambda f: store.save_torch(
            checkpoint,
            {"key": store.canonical(key), "federation": f.state(), "seconds": earlier + time.perf_counter() - start},
        ),
    )
    summary = federation.summary()
    model_file.save(
        folder / "model.pt",
        federation.model,
        target=target,
        scaler=federation.scaler,
        spec=graph_set.spec,
        dataset=graph_set.name,
        data_digest=graph_set.data_digest(target),
        details={"config": asdict(config), "clients": clients, "partition": scheme, "alpha": alpha},
    )
    row = {
        "model": model,
        "target": target,
        "algorithm": config.algorithm,
        "partition": scheme,
        "seed": config.seed,
        "clients": clients,
        "crystals": len(graph_set),
        "test": len(split["test"]),
        **{m: summary[m] for m in METRICS},
        "pearson_r": summary["pearson_r"],
        "best_round": summary["best_round"],
        "failed": summary["failed"],
        "rejected": summary["rejected"],
        "seconds": earlier + time.perf_counter() - start,  # over every sitting of a resumed run
    }
    store.write_csv(folder / "history.csv", history)
    store.write_csv(folder / "rounds.csv", pd.DataFrame(federation.log))
    store.write_csv(folder / "clients.csv", describe(shards, graph_set.target(target).numpy()))
    pred = federation.predictions()
    pred.insert(0, "id", graph_set.table["id"].to_numpy()[pred["row"]])
    store.write_csv(folder / "predictions.csv", pred.drop(columns="row"))
    runs.finish(folder, key, row)
    return row, history


@dataclass(frozen=True)
class FederatedJob:
    """One federation of :func:`run_federated` that a worker process makes on the graph set its model reads."""

    model: str
    hyper: dict
    target: str
    config: FedConfig
    scheme: str
    clients: int
    alpha: float
    store_root: Path
    group: str = ""


def _federated_job(sets: dict[str, GraphSet], job: FederatedJob) -> tuple[dict, pd.DataFrame]:
    return run_federated(
        job.model,
        job.hyper,
        sets[job.model],
        job.target,
        job.config,
        job.scheme,
        job.clients,
        job.alpha,
        job.store_root,
        job.group,
    )


@dataclass(frozen=True)
class CentralJob:
    """One central baseline run (04b_models' run read back when its key matches)."""

    model: str
    hyper: dict
    target: str
    config: TrainConfig
    store_root: Path
    group: str = ""


def _central_job(sets: dict[str, GraphSet], job: CentralJob) -> dict:
    model, hyper, target, config, store_root, group = (
        job.model,
        job.hyper,
        job.target,
        job.config,
        job.store_root,
        job.group,
    )
    graph_set = sets[model]
    shared = store_paths.model_run(store_root, model, target, config.seed)
    folder = store_paths.central_run(store_root, model, target, config.seed, group)
    result = fit_regressor(
        lambda: build_model(model, **hyper),
        graph_set,
        target,
        config,
        folder,
        formula_column="formula",
        fractions=MP_SPLIT,
        show=False,
        reuse=[shared],
    )
    like_federation = result.by_criterion["val_mse"]  # the epoch of lowest validation MSE, as the federation keeps
    return {
        "model": model,
        "target": target,
        "seed": config.seed,
        "algorithm": "central",
        "crystals": len(result.data),
        "test": int((result.predictions["split"] == "test").sum()),
        **{m: result.metrics[m] for m in METRICS},
        "best_by": config.best_by,
        "best_epoch": int(result.history[config.best_by].idxmin()) + 1,
        "epoch (best val MSE)": like_federation["epoch"],
        catalogue.MAE_AS_FEDERATED: like_federation["mae"],
        "r2 (best val MSE)": like_federation["r2"],
        "seconds": result.seconds,
    }


def run_study(
    models: list[str],
    targets: list[str],
    algorithms: list[str],
    seeds: list[int],
    scheme: str,
    sets: dict[str, GraphSet],
    base: FedConfig,
    clients: int,
    alpha: float,
    store_root: Path,
    hyper: dict[str, dict] | None = None,
    workers: int = 1,
    model_seeds: dict[str, list[int]] | None = None,
    model_algorithms: dict[str, list[str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (model, target, algorithm, seed) on one partition: summary rows and per-round histories
    (``model_seeds``, ``model_algorithms``: a model's own, fewer seeds or algorithms).

    ``workers`` runs that many federations at once in separate processes (one thread each: the same
    results as one by one on one thread).
    """
    hyper, model_seeds, model_algorithms = hyper or {}, model_seeds or {}, model_algorithms or {}
    jobs = [
        FederatedJob(
            m, hyper.get(m, {}), t, replace(base, algorithm=a, seed=s), scheme, clients, alpha, Path(store_root)
        )
        for t in targets
        for s in seeds
        for a in algorithms
        for m in models
        if s in model_seeds.get(m, seeds) and a in model_algorithms.get(m, algorithms)
    ]
    done = run_jobs(_federated_job, jobs, sets, workers, desc=f"federated runs ({scheme})")
    histories = [
        history.assign(
            model=job.model, target=job.target, algorithm=job.config.algorithm, seed=job.config.seed, partition=scheme
        )
        for job, (_, history) in zip(jobs, done)
    ]
    return pd.DataFrame([row for row, _ in done]), pd.concat(histories, ignore_index=True)


def run_central(
    models: list[str],
    targets: list[str],
    seeds: list[int],
    sets: dict[str, GraphSet],
    base: FedConfig,
    store_root: Path,
    hyper: dict[str, dict] | None = None,
    workers: int = 1,
    group: str = "",
    model_seeds: dict[str, list[int]] | None = None,
) -> pd.DataFrame:
    """The central baseline: all training crystals on one machine for rounds x local epochs epochs (early
    stopping after patience x local epochs epochs, the same amount of training as the federation's patience);
    ``group``: a sub-study's folder; ``model_seeds``: a model's own, fewer seeds."""
    hyper, model_seeds = hyper or {}, model_seeds or {}
    config = TrainConfig(
        epochs=base.rounds * base.local_epochs,
        batch_size=base.batch_size,
        lr=base.lr,
        patience=base.patience * base.local_epochs if base.patience else None,
    )
    jobs = [
        CentralJob(m, hyper.get(m, {}), t, replace(config, seed=s), Path(store_root), group)
        for t in targets
        for s in seeds
        for m in models
        if s in model_seeds.get(m, seeds)
    ]
    return pd.DataFrame(run_jobs(_central_job, jobs, sets, workers, desc="central runs"))


def table1(federated: pd.DataFrame, central: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of MSE, RMSE, MAE, R2 per target, model and algorithm, each row with its crystals
    (train + validation + test, and test), beside the central baseline on the same crystals and split read like
    the federation (at its epoch of lowest validation MSE, as the federation keeps its round of lowest validation
    MSE), and how many times that central MAE the federated one is (ratio of the seed means)."""
    rows = []
    for (target, model, algorithm), group in federated.groupby(["target", "model", "algorithm"], sort=False):
        base = central[(central["target"] == target) & (central["model"] == model)]
        rows.append(
            {
                "target": catalogue.target(target).display,
                "unit": catalogue.target(target).unit,
                "model": catalogue.model_display(model),
                "algorithm": catalogue.algorithm_display(algorithm),
                "crystals": int(group["crystals"].iloc[0]),
                "test crystals": int(group["test"].iloc[0]),
                "seeds": len(group),
                **{m.upper() if m != "r2" else "R2": mean_std(group[m]) for m in METRICS},
                "central MAE": mean_std(base[catalogue.MAE_AS_FEDERATED]) if len(base) else "",
                "central R2": mean_std(base["r2 (best val MSE)"]) if len(base) else "",
                "MAE / central": float(group["mae"].mean() / base[catalogue.MAE_AS_FEDERATED].mean())
                if len(base)
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def table1_finding(federated: pd.DataFrame, table: pd.DataFrame) -> str:
    """What Table 1 shows: per target the federated row of lowest mean MAE (from the runs), and how many times the
    central MAE the federated ones are (the table's ratios)."""
    parts = []
    means = federated.groupby(["target", "model", "algorithm"], sort=False)["mae"].mean()
    for target, group in means.groupby(level="target", sort=False):
        _, model, algorithm = group.idxmin()
        info = catalogue.target(target)
        rows = table[table["target"] == info.display]
        best = rows[
            (rows["model"] == catalogue.model_display(model))
            & (rows["algorithm"] == catalogue.algorithm_display(algorithm))
        ].iloc[0]
        ratio = rows["MAE / central"].dropna()
        parts.append(
            f"{info.display}: lowest federated MAE {best['MAE']} {best['unit']} ({best['model']}, {best['algorithm']}, "
            f"{best['crystals']:,} crystals)"
            + (f"; federated MAE is {ratio.min():.2f} to {ratio.max():.2f} times the central one" if len(ratio) else "")
        )
    return "; ".join(parts) + "." if parts else ""


def beside_paper(federated: pd.DataFrame, sets: dict[str, GraphSet]) -> pd.DataFrame:
    """This study's mean MAE and R2 next to the figures the federated paper reports, each row saying on which
    crystals each side was measured (they differ: this study's sets are mp-cgcnn, some models on a subset)."""
    ours = federated.groupby(["target", "model", "algorithm"], as_index=False)[["mae", "r2"]].mean()
    table = pd.DataFrame(published.FEDERATED_TABLE1).merge(
        ours, on=["target", "model", "algorithm"], how="left", suffixes=(" (paper)", " (this study)")
    )
    table["crystals (paper)"] = published.FEDERATED_DATA
    table["crystals (this study)"] = [sets[m].label if m in sets else "not run" for m in table["model"]]
    return table


def partition_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Test MAE (mean, std over seeds) by partition and algorithm: what non-IID data costs."""
    stats = runs.groupby(["model", "target", "partition", "algorithm"], sort=False)["mae"].agg(["mean", "std", "count"])
    return stats.reset_index().rename(columns={"mean": "MAE mean", "std": "MAE std", "count": "seeds"})


def display_names(table: pd.DataFrame) -> pd.DataFrame:
    """A table's target, model and algorithm identifiers as the catalogue displays them, the target's unit beside."""
    out = table.copy()
    out.insert(out.columns.get_loc("target") + 1, "unit", [catalogue.target(t).unit for t in out["target"]])
    out["target"] = [catalogue.target(t).display for t in out["target"]]
    out["model"] = out["model"].map(catalogue.model_display)
    out["algorithm"] = out["algorithm"].map(catalogue.algorithm_display)
    return out


def partitions_overview(
    graph_set: GraphSet, target: str, seed: int, schemes: list[str], clients: int, alpha: float
) -> pd.DataFrame:
    """Each client's crystals, target mean and chemistry under every partition (one seed)."""
    frames = []
    chemistry = anion_elements(graph_set.table["formula"])
    for scheme in schemes:
        _, shards = shards_for(graph_set, target, seed, scheme, clients, alpha)
        frames.append(describe(shards, graph_set.target(target).numpy(), chemistry).assign(partition=scheme))
    out = pd.concat(frames, ignore_index=True)
    return out[["partition", *[c for c in out.columns if c != "partition"]]]


def round_log(store_root: Path) -> pd.DataFrame:
    """Every client status that was not ``ok`` in any run (failures, rejections, clients with no data)."""
    root = store_paths.federated_root(store_root)
    frames = [
        pd.read_csv(path).assign(run=str(path.parent.relative_to(root)))
        for path in sorted(root.rglob("rounds.csv"))  # every federated run, whatever its folder depth
    ]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["status"])
    return table[table["status"] != "ok"].reset_index(drop=True)


def prepare(P: FederatedParams, run: Run) -> tuple[dict[str, GraphSet], str]:
    """The graph sets (shared with 04b_models) and what each client holds under each partition."""
    sets = central_study.load_graph_sets(
        P.dataset, P.limit, sorted({*P.models, P.compare_model}), P.workers, P.model_hyper, P.model_limits
    )
    where = f"{central_study.describe_sets(sets)}, {P.clients} clients"
    overview = partitions_overview(
        sets[P.compare_model], P.compare_target, P.seeds[0], P.compare_partitions, P.clients, P.alpha
    )
    spread = overview.groupby("partition", sort=False)["target mean"].agg(lambda m: m.max() - m.min())
    sizes = overview.groupby("partition", sort=False)["crystals"].agg(["min", "max"])
    run.save_table(
        overview,
        "clients",
        f"What each client holds under each partition (seed {P.seeds[0]}, {P.compare_target}): {where}",
        finding="; ".join(
            f"{scheme}: {sizes.loc[scheme, 'min']:,} to {sizes.loc[scheme, 'max']:,} crystals per client, client "
            f"means of the target {spread[scheme]:.3g} {catalogue.target(P.compare_target).unit} apart"
            for scheme in spread.index
        )
        + ": the further apart, the less alike the clients' data (non-IID).",
    )
    return sets, where


def table_one(P: FederatedParams, run: Run, sets: dict[str, GraphSet], where: str) -> pd.DataFrame:
    """Table 1 (every model x algorithm x target), the central baseline, convergence, faults, the paper beside."""
    base = P.fed_config()
    store_root = Path(P.store_dir)
    fed, history = run_study(
        P.models,
        P.targets,
        P.algorithms,
        P.seeds,
        P.partition,
        sets,
        base,
        P.clients,
        P.alpha,
        store_root,
        P.model_hyper,
        P.workers,
        P.model_seeds,
        P.model_algorithms,
    )
    central = run_central(
        P.models, P.targets, P.seeds, sets, base, store_root, P.model_hyper, P.workers, model_seeds=P.model_seeds
    )
    epochs = P.rounds * P.local_epochs
    stopping = (
        f", early stopping after {P.patience} rounds without a lower validation MSE (central: {P.patience * P.local_epochs} epochs without a lower validation MAE)"
        if P.patience
        else ""
    )
    run.save_table(
        fed,
        "federated_runs",
        f"Every federated run ({P.partition} partition): {where}",
        markdown=False,
        finding=f"{len(fed)} federations, {fed['seconds'].sum() / 3600:.1f} CPU-hours; {int(fed['failed'].sum())} "
        f"client updates failed and {int(fed['rejected'].sum())} were rejected over all their rounds.",
    )
    moved = int((central["epoch (best val MSE)"] != central["best_epoch"]).sum())
    change = (central[catalogue.MAE_AS_FEDERATED] - central["mae"]).groupby(central["target"], sort=False).mean()
    run.save_table(
        central,
        "central_runs",
        f"Central baseline runs ({epochs} epochs; test metrics at the epoch of lowest validation MAE, which early "
        f"stopping watched, and at the epoch of lowest validation MSE, which Table 1 compares): {where}",
        markdown=False,
        finding=f"{len(central)} central runs; {moved} of them have another best epoch by validation MSE than by "
        "validation MAE. Reading them at the epoch of lowest validation MSE, as the federation is read, changes "
        "their test MAE by "
        + ", ".join(f"{d:+.3g} {catalogue.target(t).unit} ({catalogue.target(t).display})" for t, d in change.items())
        + " on average.",
    )
    run.save_table(
        history,
        "rounds",
        f"Test MAE of the global model per round: {where}",
        markdown=False,
        finding=f"{len(history):,} rounds over {len(fed)} federations; the convergence figure below averages them.",
    )
    summary = table1(fed, central)
    table = run.save_table(
        summary,
        "table1",
        f"Table 1: test metrics, mean ± std over {P.seeds_label()}{P.algorithms_label()}, "
        f"{P.partition} partition, {P.rounds} rounds x {P.local_epochs} local epochs (central: "
        f"{epochs} epochs){stopping}. Like for like: the same crystals and split per row, both sides at their "
        f"round or epoch of lowest validation MSE (the central run's early stopping watched validation MAE). "
        f"Batching differs: each client batches its crystals once and shuffles the batches' order every round; "
        f"central training draws new batches every epoch: {where}",
        finding=table1_finding(fed, summary),
    )
    paper = beside_paper(fed, sets)
    run.save_table(
        display_names(paper),
        "vs_paper",
        f"Mean test MAE and R2 beside the federated paper's ({published.FEDERATED_PAPER}); not like for like: each "
        f"row names the crystals of each side: {where}",
        finding="; ".join(
            f"{catalogue.model_display(r['model'])} {catalogue.algorithm_display(r['algorithm'])} "
            f"{catalogue.target(r['target']).display}: {r['mae (this study)']:.3g} here against {r['mae (paper)']} "
            "in the paper"
            for _, r in paper.dropna(subset=["mae (this study)"]).iterrows()
        )
        + ". The data sets differ (the crystals columns), so these rows place the study beside the paper; they do "
        "not test it.",
    )
    run.save_figure(
        plots.convergence(history, central, where),
        "convergence",
        f"Test MAE per round (mean over seeds; diamonds right of the rounds: the central baseline at its epoch of "
        f"lowest validation MSE), {where}",
        finding=table1_finding(fed, summary),
    )
    faults = round_log(store_root)
    runs_read = len(list(store_paths.federated_root(store_root).rglob("rounds.csv")))
    run.save_table(
        faults,
        "faults",
        f"Client failures, rejections and clients without data in any run: {where}",
        finding=f"{len(faults)} client rounds that were not ok, over every federated run in the store ({runs_read}, "
        "the partition comparison and FedProx grid included)"
        + (
            ": " + ", ".join(f"{n} {status}" for status, n in faults["status"].value_counts().items()) + "."
            if len(faults)
            else ": every client returned a finite update every round."
        ),
    )
    return table


def compare_partitions(P: FederatedParams, run: Run, sets: dict[str, GraphSet]) -> pd.DataFrame:
    """One model and target federated under every partition: what non-IID data costs, FedAvg against FedProx."""
    runs = [
        run_study(
            [P.compare_model],
            [P.compare_target],
            P.algorithms,
            P.seeds,
            scheme,
            sets,
            P.fed_config(),
            P.clients,
            P.alpha,
            Path(P.store_dir),
            P.model_hyper,
            P.workers,
        )[0]
        for scheme in P.compare_partitions
    ]
    comparison = partition_table(pd.concat(runs, ignore_index=True))
    comparison["partition"] = [_partition_spec(scheme, P.alpha)[2] for scheme in comparison["partition"]]
    what = f"{catalogue.model_display(P.compare_model)}, {catalogue.target(P.compare_target).display}"
    where = f"{central_study.describe_sets({P.compare_model: sets[P.compare_model]})}, {P.clients} clients"
    means = comparison.groupby("partition", sort=False)["MAE mean"].min()
    iid = means.get("iid")
    finding = (
        "Lowest mean test MAE per partition: "
        + ", ".join(
            f"{name} {mae:.3g}" + (f" ({mae / iid:.1f}x IID)" if iid and name != "iid" else "")
            for name, mae in means.items()
        )
        + f" {catalogue.target(P.compare_target).unit}: the less alike the clients, the larger the error."
        if iid and means.max() > iid
        else "Lowest mean test MAE per partition: " + ", ".join(f"{n} {m:.3g}" for n, m in means.items()) + "."
    )
    run.save_table(
        display_names(comparison),
        "partitions",
        f"{what}: test MAE ({catalogue.target(P.compare_target).unit}) by partition, {where}",
        finding=finding,
    )
    run.save_figure(
        plots.partition_bars(comparison, P.compare_target, f"{what}: {where}"),
        "partitions",
        f"Test MAE by partition and algorithm, {where}",
        finding=finding,
    )
    return comparison


def _partition_spec(spec: str, alpha: float) -> tuple[str, float, str]:
    """``iid``, ``chemistry``, ``dirichlet`` or ``dirichlet:0.1`` -> (scheme, alpha, label)."""
    scheme, _, value = spec.partition(":")
    alpha = float(value) if value else alpha
    return scheme, alpha, f"dirichlet (alpha {alpha:g})" if scheme == "dirichlet" else scheme


def fedprox_grid(P: FederatedParams, run: Run, sets: dict[str, GraphSet], where: str) -> pd.DataFrame | None:
    """Where FedProx matters: one model and target under each partition of ``fedprox_partitions``, FedAvg and
    FedProx at every mu of ``fedprox_mus``, with ``fedprox_local_epochs`` local epochs per round, over
    ``fedprox_seeds``, on the first ``fedprox_limit`` crystals (named so in every caption);
    the client drift of every round; a verdict per partition and local epochs (None: no mu asked for)."""
    if not P.fedprox_mus:
        return None
    grid_set = sets[P.compare_model].first(P.fedprox_limit)
    if len(grid_set) < len(sets[P.compare_model]):
        sets = {P.compare_model: grid_set}
        where = f"{central_study.describe_sets(sets)}, {P.clients} clients"
    jobs, labels = [], []
    for spec in P.fedprox_partitions:
        scheme, alpha, label = _partition_spec(spec, P.alpha)
        for epochs in P.fedprox_local_epochs:
            for seed in P.fedprox_seeds:
                for mu in (0.0, *P.fedprox_mus):
                    config = replace(
                        P.fed_config("fedavg" if mu == 0 else "fedprox", seed), local_epochs=epochs, mu=mu or P.mu
                    )
                    group = f"fedprox-grid/{scheme}-a{alpha:g}/le{epochs}/{'fedavg' if mu == 0 else f'mu{mu:g}'}"
                    hyper = (P.model_hyper or {}).get(P.compare_model, {})
                    jobs.append(
                        FederatedJob(
                            P.compare_model,
                            hyper,
                            P.compare_target,
                            config,
                            scheme,
                            P.clients,
                            alpha,
                            Path(P.store_dir),
                            group,
                        )
                    )
                    labels.append({"partition": label, "local epochs": epochs, "seed": seed, "mu": mu})
    done = run_jobs(_federated_job, jobs, sets, P.workers, desc="FedProx grid")
    runs = pd.DataFrame(
        [
            {
                **label,
                "mae": row["mae"],
                "val_mse": history["val_mse"].min(),
                "drift": history["client_drift"].mean() if "client_drift" in history else float("nan"),
            }
            for label, (row, history) in zip(labels, done)
        ]
    )
    central = pd.concat(
        [
            run_central(
                [P.compare_model],
                [P.compare_target],
                P.fedprox_seeds,
                sets,
                replace(P.fed_config(), local_epochs=epochs),
                Path(P.store_dir),
                P.model_hyper,
                P.workers,
                group=f"fedprox-grid/le{epochs}",
            ).assign(**{"local epochs": epochs})
            for epochs in P.fedprox_local_epochs
        ],
        ignore_index=True,
    )
    info = catalogue.target(P.compare_target)
    what = f"{catalogue.model_display(P.compare_model)}, {info.display} ({info.unit}), {P.rounds} rounds"
    run.save_table(
        runs,
        "fedprox_runs",
        f"FedAvg (mu 0) and FedProx runs of the grid: {what}: {where}",
        markdown=False,
        finding=f"{len(runs)} federations ({runs['partition'].nunique()} partitions x "
        f"{runs['local epochs'].nunique()} local-epoch settings x {runs['mu'].nunique()} values of mu, 0 = FedAvg, x "
        f"{runs['seed'].nunique()} seeds); the verdict below pairs them by seed.",
    )
    run.save_table(
        central,
        "fedprox_central",
        f"Central baseline of the grid (rounds x local epochs epochs, same crystals): {what}: {where}",
        markdown=False,
        finding=f"{len(central)} central runs, one per local-epoch setting and seed, read at their epoch of lowest "
        "validation MSE as the federations are.",
    )
    verdict = fedprox_verdict(runs, central)
    run.save_table(
        verdict,
        "fedprox_verdict",
        f"Where FedProx beats FedAvg: {what}, seeds {P.fedprox_seeds}; FedProx at the mu of lowest mean validation "
        f"MSE among {P.fedprox_mus} (selected on validation crystals, compared on test crystals); the {len(verdict)} "
        f"paired t-tests are read together (Benjamini-Hochberg q < {FALSE_DISCOVERY_RATE} for a verdict): {where}",
        finding=f"Of {len(verdict)} partition x local-epoch settings: "
        f"{count_verdicts(verdict, 'FedProx better', 'FedProx worse')}."
        if len(verdict)
        else "",
    )
    run.save_figure(
        plots.fedprox_grid(runs, info),
        "fedprox_grid",
        f"Test MAE against FedProx mu (dashed: FedAvg), by partition and local epochs: {what}: {where}",
        finding=f"Of {len(verdict)} partition x local-epoch settings: "
        f"{count_verdicts(verdict, 'FedProx better', 'FedProx worse')} (the table above)."
        if len(verdict)
        else "",
    )
    return verdict


def fedprox_verdict(runs: pd.DataFrame, central: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per partition and local epochs: FedAvg's test MAE, FedProx's at the mu of lowest mean validation MSE (mu is
    selected on validation crystals, the verdict read on test crystals), their paired difference over seeds with a
    paired t-test; the table's tests are read together, so a difference counts where its Benjamini-Hochberg q is
    below the false discovery rate (three seeds or more). Also the mean client drift of both, and the central
    baseline's MAE with as many epochs, at its epoch of lowest validation MSE as the federation (``central``: runs
    with a ``local epochs`` column)."""
    rows = []
    for (label, epochs), group in runs.groupby(["partition", "local epochs"], sort=False):
        base = (
            central[central["local epochs"] == epochs][catalogue.MAE_AS_FEDERATED]
            if central is not None
            else pd.Series(dtype=float)
        )
        fedavg = group[group["mu"] == 0].set_index("seed")
        best = float(group[group["mu"] > 0].groupby("mu")["val_mse"].mean().idxmin())
        fedprox = group[group["mu"] == best].set_index("seed")
        delta = (fedprox["mae"] - fedavg["mae"]).dropna()
        p = paired_p(fedprox.loc[delta.index, "mae"], fedavg.loc[delta.index, "mae"])
        rows.append(
            {
                "partition": label,
                "local epochs": epochs,
                "seeds": len(delta),
                "FedAvg MAE": mean_std(fedavg["mae"]),
                "mu (best validation)": best,
                "FedProx MAE": mean_std(fedprox["mae"]),
                "change (FedProx - FedAvg)": mean_std(delta),
                "change %": 100 * delta.mean() / fedavg["mae"].mean(),
                "paired t-test p": p,
                "client drift FedAvg": fedavg["drift"].mean(),
                "client drift FedProx": fedprox["drift"].mean(),
                "central MAE": mean_std(base) if len(base) else "",
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["MAE gain %"] = -table["change %"]  # positive: FedProx lower
    return with_verdicts(table, "MAE gain %", "FedProx better", "FedProx worse").drop(columns="MAE gain %")
