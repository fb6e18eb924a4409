"""Real multi-site federations on Flower's deployment engine: a SuperLink, one SuperNode per site, ``flwr run``.

Each role is a thin front to Flower's own command, with the study's settings written as a TOML config
file (the server app's run config, a site's node config):

    python -m mlib.federated.flower superlink --port 9091                          # the coordinating machine
    python -m mlib.federated.flower site --superlink HOST:9091 --client-id 0 \\
        --data site0.csv --target band_gap                                           # on every site
    python -m mlib.federated.flower run --superlink HOST:9091 --clients 2 \\
        --model gcn --algorithm fedprox --rounds 20 --out fed.pt                     # anywhere: submit the run

The server app (:mod:`mlib.federated.server_app`) and the client app (:mod:`mlib.federated.client_app`)
run inside Flower's SuperLink and SuperNodes; ``mlib/federated/app/pyproject.toml`` is the Flower App
that ``flwr run`` submits. Flower's state and installed apps live under ``--home`` (``$FLWR_HOME``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlib.catalogue import ALGORITHMS
from mlib.federated import task
from mlib.graphs.featurize import NoGraphs

CONNECTION = "mlib"


def toml_value(value: Any) -> str:
    """A TOML scalar: strings as basic strings, numbers and booleans as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """A flat TOML file of ``values`` (what Flower's ``--run-config`` / ``--node-config`` read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()))
    return path


def flower_command(name: str) -> str:
    """Flower's command ``name`` from this environment (next to this Python), else from PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(
            f"error: Flower's `{name}` command is not installed here; install mlib's environment "
            "(make venv) on this machine"
        )
    return found


def environment(home: Path) -> dict[str, str]:
    """This process's environment with Flower's home and this environment's commands first on PATH."""
    env = dict(os.environ, FLWR_HOME=str(home.resolve()))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def superlink(args: argparse.Namespace) -> int:
    """Flower's SuperLink, its state in ``--home`` (insecure HTTP: for a closed network or with a TLS proxy)."""
    args.home.mkdir(parents=True, exist_ok=True)
    command = [
        flower_command("flower-superlink"),
        "--insecure",
        "--database",
        str(args.home / "superlink.db"),
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    return subprocess.call(command, env=environment(args.home))


def site(args: argparse.Namespace) -> int:
    """Flower's SuperNode for this site, with its data and settings as node config."""
    node = {
        "data": str(args.data.resolve()) if args.data else "",
        "target": args.target,
        "dataset": args.dataset,
        "limit": args.limit or 0,
        "partition": args.partition,
        "client-id": args.client_id,
        "clients": args.clients,
        "batch-size": args.batch_size,
        "model": args.model,
        "hyper": json.dumps(args.hyper, separators=(",", ":")),
        "seed": args.seed,
    }
    node = task.with_defaults(node, task.NODE_CONFIG)
    try:
        task.site_graphs(node)  # checks the data and says what the site uses; the client app reads the graph cache
    except (task.SiteDataError, NoGraphs) as exc:
        raise SystemExit(f"error: {exc}") from None
    config = write_config(args.home / f"site{args.client_id}.toml", node)
    command = [
        flower_command("flower-supernode"),
        "--insecure",
        "--superlink",
        args.superlink,
        "--node-config",
        str(config),
        "--port",
        str(args.port),
    ]
    wait_for(args.superlink, args.wait)
    print(f"site {args.client_id}: joined the SuperLink at {args.superlink}", flush=True)
    return subprocess.call(command, env=environment(args.home))


def wait_for(address: str, timeout: float) -> None:
    """Block until something listens at HOST:PORT, saying so once; a clear error after ``timeout`` seconds."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"error: no SuperLink at {address} after {timeout:.0f} s; start it first "
                    "(python -m mlib.federated.flower superlink)"
                ) from None
            if not said:
                print(f"waiting for the SuperLink at {address} (up to {timeout:.0f} s)", flush=True)
                said = True
            time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    """Submit the federation to the SuperLink with ``flwr run`` and wait for its end; the model goes to ``--out``."""
    wait_for(args.superlink, args.timeout)
    out = args.out.resolve()
    out.unlink(missing_ok=True)
    values = {
        "model": args.model,
        "hyper": json.dumps(args.hyper, separators=(",", ":")),
        "algorithm": args.algorithm,
        "num-server-rounds": args.rounds,
        "local-epochs": args.local_epochs,
        "lr": args.lr,
        "mu": args.mu,
        "seed": args.seed,
        "clients": args.clients,
        "out": str(out),
        "timeout": args.timeout,
    }
    run_config = write_config(args.home / "run.toml", task.with_defaults(values, task.RUN_CONFIG))
    args.home.mkdir(parents=True, exist_ok=True)
    (args.home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{args.superlink}"\ninsecure = true\n'
    )
    command = [
        flower_command("flwr"),
        "run",
        str(task.APP_DIR),
        CONNECTION,
        "--run-config",
        str(run_config),
        "--stream",
    ]
    code = subprocess.call(command, env=environment(args.home))
    if code != 0 or not out.exists():
        print(
            f"error: the federation ended without a model at {out} (flwr run exit code {code}); "
            "see the server app's log above",
            file=sys.stderr,
        )
        return code or 1
    print(f"global model written to {out}", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m mlib.federated.flower",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    roles = main.add_subparsers(dest="role", required=True)
    link = roles.add_parser("superlink", help="coordinate the federation (Flower SuperLink)")
    link.add_argument("--host", default="0.0.0.0")
    link.add_argument("--port", type=int, default=9091)
    node = roles.add_parser("site", help="join with this site's crystals (Flower SuperNode)")
    node.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    node.add_argument("--client-id", type=int, required=True, help="this site's number (seeds its batches)")
    node.add_argument("--data", type=Path, help="this site's CSV: id, cif and the target column")
    node.add_argument("--target", default="formation_energy_per_atom")
    node.add_argument("--dataset", default="mp-cgcnn", help="or: rehearse with a shard of this data set")
    node.add_argument("--limit", type=int, default=None)
    node.add_argument("--partition", default="iid")
    node.add_argument("--clients", type=int, default=5, help="shards of the rehearsal data set")
    node.add_argument("--batch-size", type=int, default=64)
    node.add_argument("--port", type=int, default=9094, help="this SuperNode's local API port")
    node.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the SuperLink to answer")
    submit = roles.add_parser("run", help="submit the federation (flwr run) and wait for the model")
    submit.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    submit.add_argument("--clients", type=int, required=True, help="sites to wait for")
    submit.add_argument("--algorithm", choices=list(ALGORITHMS), default="fedavg")
    submit.add_argument("--rounds", type=int, default=task.RUN_CONFIG["num-server-rounds"])
    submit.add_argument("--local-epochs", type=int, default=task.RUN_CONFIG["local-epochs"])
    submit.add_argument("--lr", type=float, default=task.RUN_CONFIG["lr"])
    submit.add_argument("--mu", type=float, default=task.RUN_CONFIG["mu"], help="FedProx proximal weight")
    submit.add_argument("--timeout", type=float, default=task.RUN_CONFIG["timeout"], help="seconds to wait for sites")
    submit.add_argument("--out", type=Path, default=Path(task.RUN_CONFIG["out"]))
    for sub in (link, node, submit):
        sub.add_argument("--home", type=Path, default=Path(".flwr"), help="Flower's state folder ($FLWR_HOME)")
    for sub in (node, submit):
        sub.add_argument("--model", default="gcn")
        sub.add_argument(
            "--hyper", type=json.loads, default={}, help="model hyperparameters as JSON, e.g. '{\"hidden\": 32}'"
        )
        sub.add_argument("--seed", type=int, default=0)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return {"superlink": superlink, "site": site, "run": run}[args.role](args)


if __name__ == "__main__":
    raise SystemExit(main())
