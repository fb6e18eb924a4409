"""A sweep worker on toy data, run as a separate process by tests/test_sweep.py."""

import sys

from mlib import sweep
from mlib.params import SearchSpace
from tests.conftest import toy_data

SPACE = SearchSpace(conv_layers=[1, 2], batch_size=[4], hidden=[4], lr=[0.01, 0.001])
INPUTS = {"data": "toy_data()", "space": SPACE.grid()}  # what the toy trials depend on

if __name__ == "__main__":
    url, epochs = sys.argv[1], int(sys.argv[2])
    graphs, y = toy_data()
    study = sweep.make_study("toy", url, SPACE, INPUTS, "grid", epochs=epochs, heartbeat=1)
    sweep.run_worker(study, graphs, y, SPACE, epochs, seed=0)
