"""From pre-training to few data: a pre-trained encoder with a new head, fine-tuned on N crystals.

The encoder (everything before the crystal vector) comes from a model trained on MP, centrally
(04b_models) or federatedly (05_federated); the head is re-initialised. Every N uses the same test
(and validation pool) split of the target data set; the N training crystals are drawn from its
training split with the run's seed, and the validation set shrinks with N in the 6:2 ratio of the
full split (at least 10 crystals), as a user with N labelled crystals would have.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlib.graphs.featurize import GraphSet
from mlib.models.registry import build_model
from mlib.parallel import run_jobs
from mlib.training import FineTune, TrainConfig, fit_regressor, split_indices


class EncoderMismatch(ValueError):
    """A pre-trained model cannot provide the encoder of the model being fine-tuned."""


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's head."""
    head = {id(p) for m in model.head_modules() for p in [*m.parameters(), *m.buffers()]}
    return {k for k, v in model.state_dict(keep_vars=True).items() if id(v) in head}


def load_encoder(model: nn.Module, path: Path) -> list[str]:
    """Copy the encoder weights of a saved model (``model.pt``) into ``model``; returns the keys loaded."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no pre-trained model at {path}; run the notebook that trains it first")
    saved = torch.load(path, weights_only=False)
    name = getattr(model, "name", "cgcnn")
    if saved.get("name", "cgcnn") != name or json.dumps(saved["hyper"], sort_keys=True) != json.dumps(
            json.loads(json.dumps(model.hyper)), sort_keys=True):
        raise EncoderMismatch(f"{path} holds {saved.get('name', 'cgcnn')} {saved['hyper']}, not {name} {model.hyper}")
    skip = head_keys(model)
    encoder = {k: v for k, v in saved["model"].items() if k not in skip and not k.startswith("_final.")}
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
    return {"train": np.sort(rng.choice(full["train"], n_train, replace=False)),
            "val": np.sort(rng.choice(full["val"], n_val, replace=False)), "test": full["test"]}


def fine_tune_run(model: str, hyper: dict, graph_set: GraphSet, target: str, n_train: int | None, seed: int,
                  encoder_path: str | None, fine_tune: FineTune | None, config: TrainConfig, out_dir: Path,
                  source: str) -> dict:
    """One point of the learning curve (or its saved result): test metrics of one source, N and seed."""
    mode = fine_tune.encoder if fine_tune else "scratch"
    folder = Path(out_dir) / "runs" / source / mode / f"n{n_train or 'all'}" / f"seed{seed}"
    done = folder / "metrics.json"
    key = {"config": asdict(config), "hyper": json.loads(json.dumps(hyper)), "encoder": encoder_path,
           "fine_tune": asdict(fine_tune) if fine_tune else None, "crystals": len(graph_set)}
    if done.exists() and json.loads(done.read_text())["key"] == key:
        return json.loads(done.read_text())["row"]
    graph_set = graph_set.with_finite(target)
    split = transfer_split(len(graph_set), n_train, seed)

    def build() -> nn.Module:
        net = build_model(model, **hyper)
        if encoder_path is not None:
            load_encoder(net, Path(encoder_path))
        return net

    start = time.perf_counter()
    result = fit_regressor(build, graph_set, target, TrainConfig(**{**asdict(config), "seed": seed}), folder,
                           resume=False, progress=False, split=split, fine_tune=fine_tune)
    row = {"source": source, "mode": mode, "n_train": len(split["train"]), "n": n_train or "all", "seed": seed,
           "test": len(split["test"]), **{k: result.metrics[k] for k in ("mae", "rmse", "r2", "pearson_r")},
           "epochs": len(result.history), "seconds": time.perf_counter() - start}
    done.write_text(json.dumps({"row": row, "key": key}, indent=1))
    return row


def _job(graph_set: GraphSet, *args) -> dict:
    model, hyper, target, n_train, seed, encoder_path, fine_tune, config, out_dir, source = args
    return fine_tune_run(model, hyper, graph_set, target, n_train, seed, encoder_path, fine_tune, config, out_dir, source)


def learning_curves(model: str, hyper: dict, graph_set: GraphSet, target: str, sizes: list[int | None],
                    seeds: list[int], encoders: dict[str, str], modes: list[FineTune], config: TrainConfig,
                    out_dir: Path, workers: int = 1) -> pd.DataFrame:
    """Test metrics for every N, seed and source: ``scratch`` plus each pre-trained encoder x fine-tune mode.

    ``encoders`` maps a source label (``federated fedavg, formation_energy_per_atom``) to a ``model.pt``.
    """
    jobs = [(model, hyper, target, n, s, None, None, config, Path(out_dir), "scratch") for n in sizes for s in seeds]
    jobs += [(model, hyper, target, n, s, path, mode, config, Path(out_dir), source)
             for source, path in encoders.items() for mode in modes for n in sizes for s in seeds]
    return pd.DataFrame(run_jobs(_job, jobs, graph_set, workers, desc="fine-tuning runs"))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """MAE and Pearson R, mean ± std over seeds, per source, mode and N."""
    def fmt(values: pd.Series) -> str:
        return f"{values.mean():.4g} ± {values.std(ddof=1) if len(values) > 1 else 0:.2g}"

    rows = []
    for (source, mode, n), group in runs.groupby(["source", "mode", "n_train"], sort=False):
        rows.append({"source": source, "mode": mode, "N": n, "seeds": len(group), "MAE": fmt(group["mae"]),
                     "Pearson R": fmt(group["pearson_r"]), "mae_mean": group["mae"].mean()})
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
        rows.append({"source": source, "mode": mode, "best relative MAE gain": float(gain.max()),
                     "at N": int(gain.idxmax()), "helps beyond noise at N": ", ".join(str(int(n)) for n in
                                                                                   gain.index[helps]) or "none",
                     "stops helping from": verdict})
    return pd.DataFrame(rows)
