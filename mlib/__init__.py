"""mlib: a reproducible study of crystal graph neural networks for materials property prediction.

Layers, lowest first: the vocabulary (:mod:`mlib.catalogue`, :mod:`mlib.published`, :mod:`mlib.params`);
data loaders (:mod:`mlib.data`, :mod:`mlib.datasets`) and crystal graphs (:mod:`mlib.graphs`); models
(:mod:`mlib.models`); engines (:mod:`mlib.training`, :mod:`mlib.sweep`, :mod:`mlib.federated`) with the
run store (:mod:`mlib.store`, :mod:`mlib.model_file`); one module per notebook (:mod:`mlib.study`); and
the runner (:mod:`mlib.reproduce`). Notebooks under ``notebooks/`` tell the story and call :mod:`mlib.study`.
"""

import os
import warnings

# DGL picks its tensor backend at import time; pin it so no notebook or worker prints a warning.
os.environ.setdefault("DGLBACKEND", "pytorch")
# Optuna and others import tqdm.auto; without ipywidgets it warns in every notebook. mlib prints its own progress.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
