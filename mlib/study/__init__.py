"""One module per notebook: what each numbered notebook computes (the notebook keeps the story).

==================  ===========================
notebook            module
==================  ===========================
``01_data``         :mod:`mlib.study.nb01_data`
``02_train``        :mod:`mlib.study.nb02_train`
``03_sweep``        :mod:`mlib.study.nb03_sweep`
``03b_composition`` :mod:`mlib.study.nb03b_composition`
``04_embed``        :mod:`mlib.study.nb04_embed`
``04b_models``      :mod:`mlib.study.nb04b_models`
``05_federated``    :mod:`mlib.study.nb05_federated`
``06_transfer``     :mod:`mlib.study.nb06_transfer`
==================  ===========================

Each module's functions take the notebook's checked parameters (``P``) and its :class:`mlib.outputs.Run`,
write tables and figures through it, and keep their training runs in the run store (``P.store_dir``).
"""
