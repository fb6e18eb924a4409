"""Shared fixtures: an isolated cache, a loopback HTTP server with recorded responses, mirror checks."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import dgl
import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from mlib.data import mirror
from mlib.graphs.featurize import to_graph
from mlib.graphs.neighbors import GraphSpec, structure_arrays

FIXTURES = Path(__file__).parent / "fixtures"

needs_mirror = pytest.mark.skipif(not mirror.available(), reason="MLIB_DATA_MIRROR not set (CI sets it)")

# A low-symmetry cell: no two neighbours tie at the 12-neighbour cut, so every graph is order-independent.
DISTORTED = Structure(
    Lattice.from_parameters(4.1, 4.5, 5.2, 85, 95, 100),
    ["Sr", "Ti", "O", "O", "O"],
    [[0.01, 0.02, 0.0], [0.48, 0.53, 0.51], [0.52, 0.47, 0.03], [0.55, 0.02, 0.46], [0.04, 0.5, 0.57]],
)


def crystal_graph(structure: Structure) -> dgl.DGLGraph:
    """The CGCNN graph of one structure (8 A, 12 neighbours)."""
    return to_graph(structure_arrays(structure, GraphSpec()))


def toy_data(n: int = 24) -> tuple[list[dgl.DGLGraph], torch.Tensor]:
    """``n`` NaCl cells of growing lattice constant; the target is the lattice constant plus noise."""
    rng = np.random.default_rng(0)
    graphs, ys = [], []
    for k in range(n):
        a = 3.0 + 0.05 * k
        s = Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        graphs.append(crystal_graph(s))
        ys.append(a + rng.normal(0, 0.01))
    return graphs, torch.tensor(ys, dtype=torch.float32)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its caches under a temporary folder, never the user's ~/.cache/mlib."""
    monkeypatch.setenv("MLIB_CACHE", str(tmp_path_factory.mktemp("cache")))


class RecordedServer:
    """Serves byte strings on loopback; supports HTTP Range and can cut a response short once."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.cut_once: dict[str, int] = {}  # path -> bytes to send before dropping the connection
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path = self.path
                server.requests.append((path, self.headers.get("Range")))
                body = server.routes.get(path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.cut_once.pop(path, None)
                self.wfile.write(body[start : start + cut] if cut is not None else body[start:])
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = RecordedServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
