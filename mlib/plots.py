"""Figures of the study, drawn from saved tables so they can be redrawn without recomputing.

Axes carry display names and units from :mod:`mlib.catalogue` (thermal expansion in 10^-6 1/K);
:meth:`mlib.outputs.Run.save_figure` saves each figure and shows it inline in a notebook.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from mlib import catalogue
from mlib.catalogue import Target

sns.set_theme(style="whitegrid", context="notebook")


def target_histogram(values: pd.Series, target: Target, title: str, bins: int = 60):
    """Histogram of a target (in its display unit), with a log-scale inset of its positive values."""
    values = values / target.scale
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.hist(values, bins=bins, color="tab:blue", alpha=0.85)
    ax.set_xlabel(target.label())
    ax.set_ylabel("crystals")
    ax.set_title(title, fontsize=10)
    positive = values[values > 0]
    if len(positive) > 1:
        inset = ax.inset_axes([0.5, 0.42, 0.46, 0.5])
        inset.hist(
            positive,
            bins=np.logspace(np.log10(positive.min()), np.log10(positive.max()), 40),
            color="tab:orange",
            alpha=0.85,
        )
        inset.set_xscale("log")
        inset.set_xlabel(target.axis_unit, fontsize=7)
        inset.set_title(f"log scale ({(values <= 0).sum()} non-positive not shown)", fontsize=7)
        inset.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def arity_bars(summary: pd.DataFrame, columns: tuple[str, ...] = ("unary", "binary", "ternary")):
    """Crystals by number of elements, one group of bars per data set."""
    long = summary.melt(
        id_vars="dataset", value_vars=[c for c in columns if c in summary], var_name="arity", value_name="count"
    )
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    sns.barplot(long, x="arity", y="count", hue="dataset", ax=ax)
    ax.set_ylabel("crystals")
    for container in ax.containers:
        ax.bar_label(container, fontsize=7)
    ax.set_title("Crystals by number of elements")
    fig.tight_layout()
    return fig


def count_steps(steps: pd.DataFrame):
    """Horizontal bars of a pipeline's counts, step by step, on a log axis: the steps that drop a handful of
    entries stay visible beside those that keep thousands (a count of 0 is drawn as an empty bar, labelled)."""
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(steps) + 1))
    labels = steps["dataset"] + ": " + steps["step"] if "dataset" in steps else steps["step"]
    counts = steps["count"].to_numpy()[::-1]
    ax.barh(labels[::-1], np.maximum(counts, 1), left=0.5, color="tab:green")
    for y, v in enumerate(counts):
        ax.text(max(v, 1) + 0.5, y, f" {v:,}", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(0.5, max(counts.max(), 1) * 4)
    ax.set_xlabel("entries (log scale)")
    fig.tight_layout()
    return fig


def agreement_bars(table: pd.DataFrame):
    """Per-property agreement of our atom features with the reference ``atom_init.json``."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    sns.barplot(table, y="property", x="agreement", ax=ax, color="tab:purple")
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of elements 1..100 in the same one-hot bin as atom_init.json")
    fig.tight_layout()
    return fig


def parity(true: np.ndarray, pred: np.ndarray, target: Target, title: str):
    """Predicted against true values (display unit) with the y = x line."""
    true, pred = np.asarray(true) / target.scale, np.asarray(pred) / target.scale
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.scatter(true, pred, s=8, alpha=0.5, edgecolor="none", label="test crystals")
    lo, hi = min(true.min(), pred.min()), max(true.max(), pred.max())
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    ax.set_xlabel(target.label("true"))
    ax.set_ylabel(target.label("predicted"))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def learning_curves(history: pd.DataFrame, title: str):
    """Training and validation MSE (standardised target) per epoch, log scale."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(history["epoch"], history["train_mse"], label="train")
    ax.plot(history["epoch"], history["val_mse"], label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (standardised target)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


def paired_differences(points: pd.DataFrame, target: Target, against: str = "the defaults"):
    """Change of test MAE (a row's minus ``against``'s, display unit) per split, one row per ``change``."""
    changes = list(dict.fromkeys(points["change"]))
    fig, ax = plt.subplots(figsize=(6.0, 0.6 * len(changes) + 1.4))
    for row, change in enumerate(changes):
        values = points.loc[points["change"] == change, "delta_mae"].to_numpy()
        ax.scatter(values, np.full(len(values), row), color=sns.color_palette()[0], s=25, zorder=3, label=None)
        ax.plot([values.mean()] * 2, [row - 0.3, row + 0.3], color="black", lw=2)
    ax.axvline(0.0, color="grey", lw=1)
    ax.set_yticks(range(len(changes)), changes)
    ax.invert_yaxis()
    ax.set_xlabel(f"test MAE minus {against}'s ({target.axis_unit}); bar: mean over splits")
    ax.set_title(f"> 0: higher error than {against}", fontsize=9)
    fig.tight_layout()
    return fig


def _plain_log_y(ax, digits: str = "125") -> None:
    """A log y axis labelled in plain numbers at d x 10^k for each leading digit d in ``digits``."""
    ax.set_yscale("log")
    ticks = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in digits else "")
    ax.yaxis.set_major_formatter(ticks)
    ax.yaxis.set_minor_formatter(ticks)


def _legend_beside(fig, handles: list, names: list[str], **style) -> None:
    """One legend for all panels, to the right of them (saved figures are cropped to fit it)."""
    fig.legend(handles, names, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), **style)


def _log_sizes_axes(ax, sizes: list[int]) -> None:
    """Log-log axes against training-set size: the sizes run as x ticks, y ticks at 1, 2, 5 x 10^k."""
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    _plain_log_y(ax)


def error_vs_size(curve: pd.DataFrame, target: Target, floor: float):
    """Test MAE against the number of training crystals (log-log), with the label spread of one compound."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ax.plot(curve["train crystals"], curve["mae"] / target.scale, marker="o", label="CGCNN, test MAE")
    ax.axhline(floor / target.scale, color="grey", ls="--", label="label spread of one compound (mean |dev.|)")
    _log_sizes_axes(ax, [int(n) for n in curve["train crystals"]])
    ax.set_xlabel("training crystals")
    ax.set_ylabel(f"test MAE ({target.axis_unit})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def composition_vs_structure(table: pd.DataFrame, target: Target):
    """Test MAE (mean ± std, display unit) per model, grouped by split and test set; structure models hatched."""
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(table) + 1.2))
    labels = [f"{m} | {s} split, {t} test" for m, s, t in zip(table["model"], table["split"], table["test set"])]
    colors = [sns.color_palette()[0] if r == "structure" else sns.color_palette()[1] for r in table["input"]]
    ax.barh(labels, table["mae_mean"] / target.scale, xerr=table["mae_std"] / target.scale, color=colors, capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel(f"test MAE ({target.axis_unit}), mean ± std")
    _legend_beside(
        fig,
        [
            plt.Rectangle((0, 0), 1, 1, color=sns.color_palette()[0]),
            plt.Rectangle((0, 0), 1, 1, color=sns.color_palette()[1]),
        ],
        ["crystal structure (CGCNN)", "composition only"],
    )  # beside the bars, so it covers none
    fig.tight_layout()
    return fig


def fedprox_grid(runs: pd.DataFrame, target: Target):
    """Test MAE (mean ± std over seeds) against FedProx mu, one line per partition, FedAvg dashed; a panel per
    number of local epochs."""
    panels = sorted(runs["local epochs"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.8), squeeze=False, sharey=True)
    colors = dict(zip(dict.fromkeys(runs["partition"]), sns.color_palette()))
    for ax, epochs in zip(axes[0], panels):
        for label, group in runs[runs["local epochs"] == epochs].groupby("partition", sort=False):
            stats = group.groupby("mu")["mae"].agg(["mean", "std"]) / target.scale
            prox = stats[stats.index > 0]
            ax.errorbar(
                prox.index,
                prox["mean"],
                yerr=prox["std"].fillna(0),
                marker="o",
                capsize=3,
                color=colors[label],
                label=label,
            )
            if 0 in stats.index:
                ax.axhline(stats.loc[0, "mean"], color=colors[label], ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("FedProx mu")
        ax.set_title(f"{epochs} local epoch{'s' if epochs > 1 else ''} per round", fontsize=10)
    axes[0][0].set_ylabel(f"test MAE ({target.axis_unit}); dashed: FedAvg")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def spread_calibration(raw: np.ndarray, scaled: np.ndarray):
    """Fraction of test errors within k ensemble spreads (``raw``: |error| / member std; ``scaled``: / the scaled
    spread), against a Gaussian's 2 Phi(k) - 1."""
    from scipy import stats

    k = np.linspace(0, 4, 161)
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    ax.plot(k, stats.norm.cdf(k) - stats.norm.cdf(-k), color="black", ls="--", label="Gaussian")
    ax.plot(k, [(raw <= x).mean() for x in k], label="member std")
    ax.plot(k, [(scaled <= x).mean() for x in k], label="member std x scale (fit on validation)")
    ax.set_xlabel("k (errors within k spreads)")
    ax.set_ylabel("fraction of test crystals")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def embedding_map(
    frame: pd.DataFrame, labels: pd.DataFrame, x: str, y: str, title: str, target: Target, colour: str = "pred"
):
    """2-D map of crystal vectors coloured by the predicted ``target`` (2nd-98th percentile range), landmarks labelled.

    Labels are staggered around their points so that neighbouring landmarks do not overlap.
    """
    fig, ax = plt.subplots(figsize=(6.6, 5.4))
    values = frame[colour] / target.scale
    lo, hi = np.percentile(values, [2, 98])
    points = ax.scatter(frame[x], frame[y], c=values, s=9, cmap="viridis", vmin=lo, vmax=hi, edgecolor="none")
    fig.colorbar(points, ax=ax, label=target.label("predicted"), extend="both")
    offsets = [(8, 8), (8, -14), (-40, 8), (-40, -14), (14, 0), (-50, 0)]
    for k, row in enumerate(labels.itertuples()):
        ax.annotate(
            row.formula,
            (getattr(row, x), getattr(row, y)),
            fontsize=7,
            xytext=offsets[k % len(offsets)],
            textcoords="offset points",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.3"},
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.8},
        )
        ax.scatter(getattr(row, x), getattr(row, y), s=30, facecolor="none", edgecolor="red", linewidth=1)
    ax.scatter([], [], s=30, facecolor="none", edgecolor="red", label="labelled: lowest/highest predicted, negative")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def sweep_scatter(trials: pd.DataFrame, params: list[str], target: Target, rungs: tuple[int, ...] = (10, 30, 90)):
    """Lowest validation MAE of every trial that reported one against each hyperparameter, coloured by how far
    it trained: stopped at a pruner's rung (``rungs``, epochs), all epochs, or cut short by an interruption."""
    data = trials.dropna(subset=["val_mae"]).assign(mae=lambda t: t["val_mae"] / target.scale)
    full = int(data["epochs_run"].max())
    data["trained"] = [
        f"{int(e)} (all)" if e == full else f"{int(e)} (pruned)" if e in rungs else "interrupted"
        for e in data["epochs_run"]
    ]
    order = [f"{r} (pruned)" for r in rungs] + [f"{full} (all)", "interrupted"]
    order = [o for o in order if o in set(data["trained"])]
    palette = dict(zip(order, sns.color_palette("viridis", len(order) - ("interrupted" in order)) + ["grey"]))
    fig, axes = plt.subplots(1, len(params), figsize=(3.0 * len(params) + 1.4, 3.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], params):
        sns.stripplot(data, x=name, y="mae", hue="trained", palette=palette, ax=ax, size=4, jitter=0.2, legend=False)
        ax.set_xlabel(catalogue.GRID_DISPLAY.get(name, name))
        ax.set_ylabel("")
        _plain_log_y(ax)
    axes[0][0].set_ylabel(f"lowest validation MAE ({target.axis_unit})")
    handles = [Line2D([], [], ls="", marker="o", color=palette[o], label=o) for o in order]
    fig.legend(handles=handles, title="epochs trained", fontsize=8, title_fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 1.3 / fig.get_figwidth(), 1))
    return fig


def sweep_heatmap(trials: pd.DataFrame, target: Target, rows: str = "hidden", columns: str = "lr"):
    """Lowest validation MAE any trial reached for each (rows, columns) pair, over the other hyperparameters."""
    table = trials.pivot_table(index=rows, columns=columns, values="val_mae", aggfunc="min") / target.scale
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    sns.heatmap(
        table,
        annot=True,
        fmt=".2f",
        cmap="viridis_r",
        ax=ax,
        cbar_kws={"label": f"validation MAE ({target.axis_unit})"},
    )
    ax.set_xlabel(catalogue.GRID_DISPLAY.get(columns, columns))
    ax.set_ylabel(catalogue.GRID_DISPLAY.get(rows, rows))
    fig.tight_layout()
    return fig


def parity_grid(predictions: pd.DataFrame, title: str, split: str = "test"):
    """One parity panel per model (columns) and target (rows): one seed's ``split`` predictions."""
    data = predictions[predictions["split"] == split]
    models, targets = list(dict.fromkeys(data["model"])), list(dict.fromkeys(data["target"]))
    fig, axes = plt.subplots(len(targets), len(models), figsize=(2.9 * len(models), 2.9 * len(targets)), squeeze=False)
    for i, name in enumerate(targets):
        target = catalogue.target(name)
        for j, model in enumerate(models):
            ax, part = axes[i, j], data[(data["model"] == model) & (data["target"] == name)]
            true, pred = part["true"] / target.scale, part["pred"] / target.scale
            ax.scatter(true, pred, s=5, alpha=0.5, edgecolor="none")
            lo, hi = min(true.min(), pred.min()), max(true.max(), pred.max())
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
            mae = (pred - true).abs().mean()
            ax.set_title(f"{catalogue.model_display(model)}: MAE {mae:.3g} {target.axis_unit}", fontsize=8)
            ax.set_xlabel(target.label("true"), fontsize=7)
            ax.set_ylabel(target.label("predicted") if j == 0 else "", fontsize=7)
            ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def metric_bars(runs: pd.DataFrame, metric: str = "mae"):
    """Mean and std over seeds of a test metric, per model, one panel per target (with its unit); where models
    saw different numbers of crystals (a ``crystals`` column), each label names its model's count."""
    targets = list(dict.fromkeys(runs["target"]))
    width = max(4.5, 0.9 * runs["model"].nunique() + 1)
    fig, axes = plt.subplots(1, len(targets), figsize=(width * len(targets), 3.9), squeeze=False)
    for ax, name in zip(axes[0], targets):
        target = catalogue.target(name)
        part = runs[runs["target"] == name]
        stats = part.groupby("model", sort=False)[metric].agg(["mean", "std"]) / target.scale
        labels = [catalogue.model_display(m) for m in stats.index]
        if "crystals" in part and part["crystals"].nunique() > 1:
            counts = part.groupby("model", sort=False)["crystals"].first()
            labels = [f"{label}\n{counts[m]:,}" for label, m in zip(labels, stats.index)]
            ax.set_xlabel("model, and the crystals it trained and was tested on", fontsize=8)
        ax.bar(labels, stats["mean"], yerr=stats["std"].fillna(0), capsize=3, color=sns.color_palette()[: len(stats)])
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(target.display, fontsize=10)
        ax.set_ylabel(f"test {metric.upper()} ({target.axis_unit}), mean ± std over seeds", fontsize=8)
    fig.tight_layout()
    return fig


def convergence(history: pd.DataFrame, central: pd.DataFrame, title: str):
    """Test MAE of the global model per round, one line per model; panels by target and algorithm.

    The central baseline's test MAE (same epochs in all; at its epoch of lowest validation MSE, as the federation
    keeps its round of lowest validation MSE) is a diamond of the model's colour right of the last round, with the
    model's name: six dashed lines of close values could not be told apart.
    """
    panels = list(dict.fromkeys(zip(history["target"], history["algorithm"])))
    models = list(dict.fromkeys(history["model"]))
    colours = dict(zip(models, sns.color_palette(n_colors=len(models))))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.9), squeeze=False)
    for ax, (name, algorithm) in zip(axes[0], panels):
        target = catalogue.target(name)
        part = history[(history["target"] == name) & (history["algorithm"] == algorithm)]
        for model in models:
            curve = part[part["model"] == model].groupby("round")["test_mae"].mean() / target.scale
            ax.plot(curve.index, curve.values, color=colours[model], label=catalogue.model_display(model))
            base = (
                central[(central["target"] == name) & (central["model"] == model)][catalogue.MAE_AS_FEDERATED]
                / target.scale
            )
            if len(base):
                x = part["round"].max() + 1.5
                ax.plot([x], [base.mean()], marker="D", ms=5, color=colours[model], ls="none")
                ax.annotate(
                    catalogue.model_display(model),
                    (x, base.mean()),
                    xytext=(5, 0),
                    textcoords="offset points",
                    fontsize=6,
                    color=colours[model],
                    va="center",
                )
        ax.set_xlim(right=part["round"].max() + 5)
        _plain_log_y(ax, digits="12345")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.set_ylabel(f"test MAE ({target.axis_unit}), mean over seeds")
        ax.set_title(f"{catalogue.algorithm_display(algorithm)}: {target.display}", fontsize=9)
    handles, names = axes[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", ls="-"), Line2D([], [], color="0.3", marker="D", ms=5, ls="none")]
    names += ["federated (global model)", "central baseline (right of the rounds)"]
    _legend_beside(fig, handles, names)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def partition_bars(table: pd.DataFrame, target_name: str, title: str):
    """Test MAE (mean ± std over seeds) by partition, one bar per algorithm."""
    target = catalogue.target(target_name)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    partitions = list(dict.fromkeys(table["partition"]))
    algorithms = list(dict.fromkeys(table["algorithm"]))
    width = 0.8 / len(algorithms)
    for k, algorithm in enumerate(algorithms):
        part = table[table["algorithm"] == algorithm].set_index("partition").reindex(partitions)
        ax.bar(
            np.arange(len(partitions)) + k * width,
            part["MAE mean"] / target.scale,
            width,
            yerr=part["MAE std"].fillna(0) / target.scale,
            capsize=3,
            label=catalogue.algorithm_display(algorithm),
        )
    ax.set_xticks(np.arange(len(partitions)) + width * (len(algorithms) - 1) / 2, partitions)
    ax.set_xlabel("how the training crystals are dealt to clients")
    ax.set_ylabel(f"test MAE ({target.axis_unit})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def transfer_curves(runs: pd.DataFrame, target_name: str, title: str):
    """Test MAE against training-set size N, log-log, one panel per model: a line per source and mode
    (mean over seeds) with a band of ± one std."""
    target = catalogue.target(target_name)
    models = list(dict.fromkeys(runs["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.4 * len(models), 4.4), sharey=True, squeeze=False)
    colours = dict(zip(sorted(set(runs["source"]) - {"scratch"}), sns.color_palette("tab10")))
    for ax, model in zip(axes[0], models):
        for (source, mode), group in runs[runs["model"] == model].groupby(["source", "mode"], sort=False):
            stats = group.groupby("n_train")["mae"].agg(["mean", "std"]).fillna(0) / target.scale
            if source == "scratch":
                style, label = {"color": "black", "lw": 2}, "from scratch"
            else:
                style = {"color": colours[source], "ls": "-" if mode == "train" else "--"}
                label = f"{catalogue.source_display(source)}, encoder {'trained' if mode == 'train' else 'frozen'}"
            ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=label, **style)
            low = np.maximum(stats["mean"] - stats["std"], stats["mean"] / 10)  # a log axis shows no value <= 0
            ax.fill_between(stats.index, low, stats["mean"] + stats["std"], alpha=0.15, color=style["color"])
        _log_sizes_axes(ax, sorted(set(runs.loc[runs["model"] == model, "n_train"])))
        ax.set_xlabel("training crystals N")
        ax.set_title(catalogue.model_display(model))
    axes[0][0].set_ylabel(f"test MAE ({target.axis_unit})")
    handles, names = axes[0][0].get_legend_handles_labels()
    _legend_beside(  # inside a panel, it hid that panel's curves at small N
        fig,
        handles,
        names,
        title="pre-trained encoder (MP target)",
        title_fontsize=8,
        handlelength=3,  # long enough to tell a frozen encoder's dashes from a trained one's line
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def experiment_curves(runs: pd.DataFrame, target: Target, anchors: dict[str, float]):
    """Test MAE against training crystals N, log-log, one panel per network: its methods (mean over splits and
    seeds, band ± one std) beside the baselines (grey, dash-dot) and the published anchors (red, dotted)."""
    networks = [m for m in dict.fromkeys(runs.loc[runs["source"] != "baseline", "model"])]
    baselines = runs[runs["source"] == "baseline"]
    fig, axes = plt.subplots(1, len(networks), figsize=(5.0 * len(networks), 4.4), sharey=True, squeeze=False)
    greys = dict(zip(dict.fromkeys(baselines["model"]), ["black", "dimgrey", "darkgrey"]))
    labels = {}
    for ax, model in zip(axes[0], networks):
        own = runs[runs["model"] == model]
        for method, group in [*own.groupby("method", sort=False), *baselines.groupby("method", sort=False)]:
            label = method if method in greys else method.replace(f"{model} from scratch", "from scratch")
            label = label.removeprefix(f"{model}, ")
            stats = group.groupby("n_train")["mae"].agg(["mean", "std"]).fillna(0) / target.scale
            if method in greys:
                style = {"color": greys[method], "ls": "-.", "lw": 1.5}
            else:
                colour = sns.color_palette("tab10")[list(labels).index(label) if label in labels else len(labels)]
                style = {
                    "color": labels.get(label, {}).get("color", colour),
                    "ls": "--" if ", frozen" in label else "-",
                }
            line = ax.plot(stats.index, stats["mean"], marker="o", ms=3, **style)[0]
            labels.setdefault(label, {"color": style["color"], "handle": line})
            low = np.maximum(stats["mean"] - stats["std"], stats["mean"] / 10)  # a log axis shows no value <= 0
            ax.fill_between(stats.index, low, stats["mean"] + stats["std"], alpha=0.12, color=style["color"])
        for k, (name, value) in enumerate(anchors.items()):
            line = ax.axhline(value / target.scale, color="tab:red", ls=":", lw=1 + k * 0.8)
            labels.setdefault(f"published: {name} ({value:g})", {"color": "tab:red", "handle": line})
        _log_sizes_axes(ax, sorted(set(runs["n_train"])))
        ax.set_xlabel("training crystals N")
        ax.set_title(model)
    axes[0][0].set_ylabel(f"test MAE against experiment ({target.axis_unit})")
    _legend_beside(fig, [v["handle"] for v in labels.values()], list(labels), handlelength=3)
    fig.tight_layout()
    return fig


def experiment_parity(tests: pd.DataFrame, method: str):
    """A network's and MP's DFT values against measured formation enthalpy (eV/atom), with y = x."""
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.scatter(tests["experiment"], tests["dft"], s=7, alpha=0.35, color="grey", edgecolor="none", label="DFT (MP)")
    ax.scatter(tests["experiment"], tests["predicted"], s=7, alpha=0.6, edgecolor="none", label=method)
    values = tests[["experiment", "dft", "predicted"]].to_numpy()
    lo, hi = values.min(), values.max()
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    ax.set_xlabel("measured formation enthalpy (eV/atom)")
    ax.set_ylabel("predicted formation enthalpy (eV/atom)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def family_bars(by_family: pd.DataFrame, method: str, unit: str):
    """Test MAE per chemistry family: the network beside DFT, each label with its crystal count."""
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(by_family) + 1.4))
    rows = np.arange(len(by_family))
    ax.barh(rows - 0.2, by_family["network"], height=0.4, label=method)
    ax.barh(rows + 0.2, by_family["DFT"], height=0.4, color="grey", label="DFT (MP)")
    ax.set_yticks(rows, [f"{f} ({n})" for f, n in zip(by_family["family"], by_family["crystals"])])
    ax.invert_yaxis()
    ax.set_xlabel(f"test MAE against experiment ({unit})")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
