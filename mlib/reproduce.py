"""Run the numbered notebooks with papermill under a named profile.

    python -m mlib.reproduce                      # the cpu profile, every notebook
    python -m mlib.reproduce --profile smoke --only 01_data -p mp_limit=100
    python -m mlib.reproduce --list               # profiles, notebooks, parameters (default, per profile, meaning)

Each notebook runs in a fresh kernel and writes its executed copy, figures, tables and
``provenance.json`` to a staging folder, ``<out>/<profile>/.staging/<notebook>/``; only when the whole
notebook ran does that folder replace ``<out>/<profile>/<notebook>/``, so a failed or interrupted
notebook never leaves results half old, half new. Training runs live in the run store,
``<out>/<profile>/store/``, and are reused by the next run when their keys match. Every parameter,
and every notebook's prerequisites, are checked before the first notebook starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from mlib import catalogue, costs, profiles, provenance
from mlib import params as P
from mlib.paths import NOTEBOOK_DIR, REPO_ROOT, RESULTS_DIR

KERNEL = "python3"  # resolved by jupyter_client to the interpreter running this module (the venv's)
STAGING = ".staging"
STORE = "store"


class RunnerError(ValueError):
    """A bad command line: unknown profile, notebook or parameter, or a missing prerequisite."""


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
    """``key=value`` pairs; values are read as YAML 1.2 (numbers, ``1e-3`` too, booleans, lists, null)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunnerError(f"override {item!r} is not of the form key=value")
        overrides[key.strip()] = profiles.read_value(value)
    return overrides


def check_prerequisites(chosen: list[Path], root: Path, force: bool = False) -> None:
    """Every prerequisite of a chosen notebook runs earlier in this call or has finished results under ``root``
    that are not stale (``force``: stale ones are read all the same)."""
    before: set[str] = set()
    stale = provenance.stale(root, catalogue.NOTEBOOKS)
    for nb in chosen:
        for needed in catalogue.NOTEBOOKS.get(nb.stem, ()):
            if needed not in before and not provenance.finished(root / needed):
                raise RunnerError(
                    f"{nb.stem} reads the results of {needed}, which has not run in this profile "
                    f"({root / needed} is missing): run {needed} first, or add it to --only"
                )
            if needed not in before and needed in stale and not force:
                raise RunnerError(
                    f"{nb.stem} reads the results of {needed}, which are stale ({stale[needed]}); add {needed} "
                    "to --only, or pass --force to read them all the same"
                )
        before.add(nb.stem)


def downstream(notebook: str) -> list[str]:
    """Every notebook that reads ``notebook``'s results, directly or through others, in order."""
    out: list[str] = []
    for name, needs in catalogue.NOTEBOOKS.items():
        if notebook in needs or any(up in out for up in needs):
            out.append(name)
    return out


def check_consistency(runs: list[tuple[Path, Path, dict[str, Any]]], root: Path, force: bool) -> None:
    """One results folder, one set of inputs: a notebook republished with other inputs (parameters, or results
    of its own prerequisites) leaves the published notebooks that read it stale unless they run too. Refused
    unless ``force`` (the runner then names the stale ones after the run)."""
    chosen = {nb.stem for nb, _, _ in runs}
    new: dict[str, str] = {}
    left: list[str] = []
    changed: list[str] = []
    for nb, results, values in runs:
        full = P.build(nb.stem, values).as_dict()  # every parameter, as the notebook records them
        ups = {up: new.get(up) or provenance.current_fingerprint(root / up) for up in catalogue.NOTEBOOKS[nb.stem]}
        new[nb.stem] = provenance.fingerprint(full, ups)
        record = provenance.record_of(results)
        if record is None:
            continue
        if "upstream" in record:
            same = provenance.current_fingerprint(results) == new[nb.stem]
        else:  # published before fingerprints were recorded: its own parameters decide
            same = provenance.fingerprint(record["parameters"], {}) == provenance.fingerprint(full, {})
        if not same:
            changed.append(nb.stem)
            left += [d for d in downstream(nb.stem) if d not in chosen and d not in left and (root / d).exists()]
    if left and not force:
        raise RunnerError(
            f"this run republishes {', '.join(changed)} with other inputs than the published results; "
            f"{', '.join(left)} in {root} read them and are not in this run, so the folder would mix results of "
            "two settings. Run them too (add them to --only, or leave --only out), or pass --force to republish "
            "and leave them marked stale"
        )


def plan(
    profile: str,
    only: list[str] | None,
    overrides: dict[str, Any],
    out: Path,
    directory: Path = NOTEBOOK_DIR,
    force: bool = False,
) -> list[tuple[Path, Path, dict[str, Any]]]:
    """Check everything and return (notebook, results folder, parameters) for each run."""
    if profile not in profiles.names():
        raise RunnerError(f"unknown profile {profile!r}; choose from {profiles.names()}")
    owned = sorted(set(overrides) & set(P.RUNNER_OWNED))
    if owned:
        raise RunnerError(f"{owned} are set by the runner (use --profile and --out), not with -p")
    chosen = select(only, directory)
    if not chosen:
        raise RunnerError(f"no numbered notebooks found in {directory}")
    known = set().union(*(P.names(nb.stem) for nb in chosen))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RunnerError(f"unknown parameter(s) {unknown} for {[nb.stem for nb in chosen]}; known: {sorted(known)}")
    root = out / profile
    runs = []
    for nb in chosen:
        values = profiles.notebook_params(profile, nb.stem, overrides)
        values["out_dir"] = os.path.relpath(
            (root / STAGING / nb.stem).resolve(), nb.parent
        )  # kernel runs in notebooks/
        values["store_dir"] = os.path.relpath((root / STORE).resolve(), nb.parent)
        P.build(nb.stem, values)  # fail fast on bad values
        runs.append((nb, root / nb.stem, values))
    check_prerequisites(chosen, root, force)
    check_consistency(runs, root, force)
    return runs


def changed_data(results: Path) -> list[str]:
    """Mirror files whose published digest differs from the one recorded in ``results``' provenance."""
    from mlib.data import mirror

    path = results / "provenance.json"
    root = mirror.mirror_root()
    if not path.exists() or root is None or not root.is_dir():
        return []
    recorded = json.loads(path.read_text()).get("data_files", {})
    prefix = f"${mirror.MIRROR_ENV}/"
    changed = []
    for name, digest in recorded.items():
        if name.startswith(prefix):
            now = mirror.published_digest(root, name.removeprefix(prefix))
            if now is not None and now != digest.split()[0]:
                changed.append(name.removeprefix(prefix))
    return changed


def expected_seconds(results: Path) -> float | None:
    """Wall time of the last finished run of this notebook in this profile (its provenance), if any."""
    path = results / "provenance.json"
    if not provenance.finished(results):
        return None
    return json.loads(path.read_text()).get("wall_time_s")


def staging_folder(results: Path) -> Path:
    return results.parent / STAGING / results.name


def publish(staging: Path, results: Path, seconds: float) -> None:
    """Mark the staged results finished, with the fingerprints of what they were made from, and swap them in for
    the notebook's results folder."""
    record_path = staging / "provenance.json"
    record = json.loads(record_path.read_text())
    record.update(finished=True, wall_time_s=round(seconds, 2))
    record["parameters"]["out_dir"] = os.path.relpath(results.resolve(), NOTEBOOK_DIR)
    needs = catalogue.NOTEBOOKS.get(results.name, ())
    record["upstream"] = {up: provenance.current_fingerprint(results.parent / up) for up in needs}
    record["fingerprint"] = provenance.fingerprint(record["parameters"], record["upstream"])
    record_path.write_text(json.dumps(record, indent=2, default=str))
    for notebook in staging.glob("*.ipynb"):
        tidy(notebook, results)
    old = results.parent / STAGING / f"{results.name}.replaced"
    shutil.rmtree(old, ignore_errors=True)
    if results.exists():
        results.rename(old)
    staging.rename(results)
    shutil.rmtree(old, ignore_errors=True)


def tidy(notebook: Path, results: Path) -> None:
    """Make the executed notebook read well on GitHub: repository-relative paths, one stream output per run of lines.

    Papermill records the absolute input and output paths of the machine that ran the notebook; the published
    copy names them relative to the repository instead. Each progress line a cell prints arrives as its own stream
    output; consecutive ones of one stream (stdout, stderr) are merged, as nbconvert's CoalesceStreamsPreprocessor
    does, so a cell shows one block of lines instead of hundreds of outputs.
    """
    import nbformat
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    doc = nbformat.read(notebook, as_version=4)
    doc, _ = CoalesceStreamsPreprocessor(enabled=True).preprocess(doc, {})
    record = doc.metadata.get("papermill")
    if record is not None:
        record["input_path"] = os.path.relpath(NOTEBOOK_DIR / notebook.name, REPO_ROOT)
        record["output_path"] = os.path.relpath(results.resolve() / notebook.name, REPO_ROOT)
    nbformat.write(doc, notebook)


def quiet_kernel_manager() -> type:
    """jupyter_client's kernel manager, less the SIGINT it sends a kernel before asking it to shut down.

    A finished notebook has nothing to interrupt; yet a kernel still leaving its last cell's handler (a
    process pool's teardown can take a moment) logs "KeyboardInterrupt caught in kernel" for that SIGINT.
    The runner's own interrupt (Ctrl-C) ends the kernel and its workers with SIGTERM instead.
    """
    from jupyter_client import AsyncKernelManager

    class QuietShutdown(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:  # jupyter_client 8: called first by shutdown_kernel
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return QuietShutdown


def execute(nb: Path, results: Path, values: dict[str, Any]) -> float:
    """Run one notebook with papermill into its staging folder, then publish it; returns the wall time (s)."""
    import papermill as pm

    staging = staging_folder(results)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    start = time.time()
    pm.execute_notebook(
        str(nb),
        str(staging / nb.name),
        parameters=values,
        kernel_name=KERNEL,
        cwd=str(nb.parent),
        progress_bar=sys.stderr.isatty(),
        log_output=True,
        stdout_file=None,
        kernel_manager_class=quiet_kernel_manager(),
    )
    seconds = time.time() - start
    publish(staging, results, seconds)
    return seconds


def sync_parameter_cells(directory: Path = NOTEBOOK_DIR) -> list[str]:
    """Rewrite each numbered notebook's parameters cell from its dataclass (:func:`mlib.params.parameters_cell`);
    returns the notebooks that changed."""
    import nbformat

    changed = []
    for path in notebooks(directory):
        doc = nbformat.read(path, as_version=4)
        cell = next(c for c in doc.cells if "parameters" in c.metadata.get("tags", []))
        wanted = P.parameters_cell(path.stem)
        if cell.source != wanted:
            cell.source = wanted
            nbformat.write(doc, path)
            changed.append(path.stem)
    return changed


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def describe() -> str:
    """Profiles, notebooks, and each parameter's default, per-profile value and meaning."""
    names = profiles.names()
    lines = [
        f"profiles: {', '.join(names)} (defined in {profiles.PROFILE_FILE.name}); the runner sets "
        f"{', '.join(P.RUNNER_OWNED)}",
        "",
    ]
    for nb in notebooks():
        needs = catalogue.NOTEBOOKS.get(nb.stem, ())
        lines.append(f"{nb.stem}" + (f"  (after {', '.join(needs)})" if needs else ""))
        per_profile = {name: profiles.notebook_params(name, nb.stem) for name in names}
        for name, default, help in P.describe(nb.stem):
            if name in P.RUNNER_OWNED:
                continue
            changed = [f"{p}={_value(v[name])}" for p, v in per_profile.items() if name in v and v[name] != default]
            lines.append(f"  {name} = {_value(default)}" + (f"  [{'; '.join(changed)}]" if changed else ""))
            lines.append(f"      {help}")
        lines.append("")
    return "\n".join(lines)


def end_children() -> None:
    """SIGTERM to every process this runner started (kernel, its pool workers, forkserver), then wait for them.

    Processes ended by SIGTERM print nothing; the kernel's workers would print a traceback each if the
    kernel were interrupted with SIGINT instead.
    """
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=15)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C or a stop request: end the notebook's kernel and workers, then unwind the runner."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end_children()
    raise KeyboardInterrupt


def report_stale(root: Path) -> None:
    """Say which published notebooks under ``root`` are stale (made from results since replaced)."""
    for notebook, why in provenance.stale(root, catalogue.NOTEBOOKS).items():
        print(f"stale: {root / notebook} was {why}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlib.reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="cpu", help="smoke, cpu (default) or paper")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (e.g. 02_train)")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter of every selected notebook that declares it",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results root (default: results/)")
    parser.add_argument("--list", action="store_true", help="list profiles, notebooks and parameters")
    parser.add_argument(
        "--sync-cells",
        action="store_true",
        help="rewrite every notebook's parameters cell from mlib/params.py (after changing a parameter there)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="republish even where notebooks that read these results are not in this run (they are marked stale)",
    )
    args = parser.parse_args(argv)
    if args.list:
        print(describe())
        return 0
    if args.sync_cells:
        print(f"parameters cells rewritten: {sync_parameter_cells() or 'none'}")
        return 0
    try:
        runs = plan(args.profile, args.only, parse_overrides(args.param), args.out, force=args.force)
    except (RunnerError, P.ParameterError, profiles.ProfileError) as exc:
        parser.exit(2, f"error: {exc}\n")
    from papermill.exceptions import PapermillExecutionError

    logging.basicConfig(format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)  # the cells' output lines: in-cell progress
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # an interrupted cell's task, reported below in one line
    signal.signal(signal.SIGTERM, _interrupt)  # a stop request ends the kernel and its workers, quietly
    signal.signal(signal.SIGINT, _interrupt)
    for nb, results, values in runs:
        last = expected_seconds(results)
        expect = f" (last run took {last / 60:.0f} min; finished runs in the store are reused)" if last else ""
        print(f"==> {nb.stem} [{args.profile}] -> {results}{expect}", flush=True)
        if changed := changed_data(results):
            print(
                f"note: the data changed since {results} was made ({', '.join(changed)} differ from the digests "
                "in its provenance.json): its numbers will change",
                flush=True,
            )
        started, outcome = time.time(), "failed"
        try:
            seconds = execute(nb, results, values)
            outcome = "finished"
        except PapermillExecutionError as exc:
            print(
                f"error: {nb.stem} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                f"the executed notebook with the traceback is {staging_folder(results) / nb.name}; "
                f"{results} and the run store are unchanged",
                file=sys.stderr,
            )
            report_stale(results.parent)
            return 1
        except KeyboardInterrupt:
            outcome = "interrupted"
            print(
                f"interrupted: {nb.stem} stopped; {results} is unchanged and every finished run is kept in "
                f"{results.parent / STORE}: rerun the same command to resume",
                file=sys.stderr,
            )
            return 130
        finally:
            costs.log_sitting(results.parent / STORE, nb.stem, started, outcome)
            costs.write(results.parent)
        print(f"<== {nb.stem} done in {seconds:.0f} s", flush=True)
    report_stale(args.out / args.profile)
    if args.out.resolve() == RESULTS_DIR.resolve():
        from mlib import readme

        print(f"README tables refreshed: {readme.update() or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
