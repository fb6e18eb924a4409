"""Run the numbered notebooks with papermill under a named profile.

    python -m mlib.reproduce                      # the cpu profile, every notebook
    python -m mlib.reproduce --profile smoke --only 01_data -p mp_limit=100
    python -m mlib.reproduce --list               # profiles, notebooks and their parameters

Each notebook runs in a fresh kernel and writes its executed copy, figures, tables and
``provenance.json`` to ``<out>/<profile>/<notebook>/``. Every parameter is checked before the
first notebook starts, so a typo fails in a second rather than after an hour of work.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mlib import params as P
from mlib import profiles
from mlib.paths import NOTEBOOK_DIR, RESULTS_DIR

KERNEL = "python3"  # resolved by jupyter_client to the interpreter running this module (the venv's)


class RunnerError(ValueError):
    """A bad command line: unknown profile, notebook or parameter."""


def notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks, in order (``01_data.ipynb``, ``02_train.ipynb``, ..., ``04b_models.ipynb``, ...)."""
    return sorted(p for p in directory.glob("[0-9][0-9]*_*.ipynb"))


def select(only: list[str] | None, directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """Notebooks named by ``--only`` (stem ``02_train`` or number ``02``), all when None."""
    available = notebooks(directory)
    if not only:
        return available
    chosen = []
    for name in only:
        match = [p for p in available if p.stem == name or p.stem.split("_")[0] == name]
        if not match:
            raise RunnerError(f"unknown notebook {name!r}; available: {[p.stem for p in available]}")
        chosen += [p for p in match if p not in chosen]
    return sorted(chosen)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML (numbers, booleans, lists, null)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunnerError(f"override {item!r} is not of the form key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def plan(profile: str, only: list[str] | None, overrides: dict[str, Any], out: Path,
         directory: Path = NOTEBOOK_DIR) -> list[tuple[Path, Path, dict[str, Any]]]:
    """Check everything and return (notebook, output folder, parameters) for each run."""
    if profile not in profiles.names():
        raise RunnerError(f"unknown profile {profile!r}; choose from {profiles.names()}")
    chosen = select(only, directory)
    if not chosen:
        raise RunnerError(f"no numbered notebooks found in {directory}")
    known = set().union(*(P.names(nb.stem) for nb in chosen))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RunnerError(f"unknown parameter(s) {unknown} for {[nb.stem for nb in chosen]}; known: {sorted(known)}")
    runs = []
    for nb in chosen:
        out_dir = out / profile / nb.stem
        values = profiles.notebook_params(profile, nb.stem, overrides)
        values["out_dir"] = os.path.relpath(out_dir.resolve(), nb.parent)  # the kernel runs in notebooks/
        P.build(nb.stem, values)  # fail fast on bad values
        runs.append((nb, out_dir, values))
    return runs


def execute(nb: Path, out_dir: Path, values: dict[str, Any]) -> float:
    """Run one notebook with papermill; returns its wall time in seconds."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=values, kernel_name=KERNEL,
                        cwd=str(nb.parent), progress_bar=True, log_output=False)
    return time.time() - start


def describe() -> str:
    lines = [f"profiles: {', '.join(profiles.names())} (defined in {profiles.PROFILE_FILE})", "notebooks:"]
    for nb in notebooks():
        lines.append(f"  {nb.stem}: {', '.join(sorted(P.names(nb.stem)))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlib.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", help="smoke, cpu (default) or paper")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (e.g. 02_train)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter of every selected notebook that declares it")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results root (default: results/)")
    parser.add_argument("--list", action="store_true", help="list profiles, notebooks and parameters")
    args = parser.parse_args(argv)
    if args.list:
        print(describe())
        return 0
    try:
        runs = plan(args.profile, args.only, parse_overrides(args.param), args.out)
    except (RunnerError, P.ParameterError, profiles.ProfileError) as exc:
        parser.exit(2, f"error: {exc}\n")
    from papermill.exceptions import PapermillExecutionError

    for nb, out_dir, values in runs:
        print(f"==> {nb.stem} [{args.profile}] -> {out_dir}", flush=True)
        try:
            seconds = execute(nb, out_dir, values)
        except PapermillExecutionError as exc:
            print(f"error: {nb.stem} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                  f"the executed notebook with the traceback is {out_dir / nb.name}", file=sys.stderr)
            return 1
        print(f"<== {nb.stem} done in {seconds:.0f} s", flush=True)
    if args.out.resolve() == RESULTS_DIR.resolve():
        from mlib import readme

        print(f"README tables refreshed: {readme.update() or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
