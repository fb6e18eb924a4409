"""A composition-only baseline: Magpie element-property statistics with a random forest.

Features: matminer's ``ElementProperty`` "magpie" preset (Ward, Agrawal, Choudhary & Wolverton, npj Comput.
Mater. 2, 16028 (2016)): minimum, maximum, range, mean, mean deviation and mode of 22 element properties
over a composition, 132 numbers per formula (missing element data imputed by matminer). Regressor:
scikit-learn's ``RandomForestRegressor``, the composition-only baseline of CrabNet's benchmark. It sees
only the formula, never the crystal structure.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from mlib.progress import track

N_TREES = 500


def magpie_features(formulas: Sequence[str]) -> np.ndarray:
    """``(len(formulas), 132)`` Magpie features; each distinct formula is featurised once."""
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    featurizer = ElementProperty.from_preset("magpie", impute_nan=True)
    distinct = sorted(set(formulas))
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matminer warns once per imputed element property
        for formula in track(distinct, len(distinct), "Magpie features", unit="formula"):
            rows[formula] = featurizer.featurize(Composition(formula))
    return np.asarray([rows[f] for f in formulas], dtype=np.float64)


def random_forest(x: np.ndarray, y: np.ndarray, seed: int, workers: int = 1, trees: int = N_TREES):
    """A random forest fitted to ``x`` -> ``y`` (seeded; ``workers`` processes build the trees)."""
    return RandomForestRegressor(n_estimators=trees, random_state=seed, n_jobs=workers).fit(x, y)
