"""mlib: a reproducible study of crystal graph neural networks for materials property prediction.

The package is thin on purpose: data loaders (:mod:`mlib.data`), crystal-graph featurisation
(:mod:`mlib.graphs`), run bookkeeping (:mod:`mlib.outputs`, :mod:`mlib.provenance`) and the
notebook runner (:mod:`mlib.reproduce`). Notebooks under ``notebooks/`` tell the story and call it.
"""
import os

# DGL picks its tensor backend at import time; pin it so no notebook or worker prints a warning.
os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
