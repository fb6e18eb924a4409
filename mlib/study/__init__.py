"""One module per notebook: what each numbered notebook computes (the notebook keeps the story).

==================  ===========================
notebook            module
==================  ===========================
``01_data``         :mod:`mlib.study.data`
``02_train``        :mod:`mlib.study.train`
``03_sweep``        :mod:`mlib.study.sweep`
``03b_composition`` :mod:`mlib.study.composition`
``04_embed``        :mod:`mlib.study.embed`
``04b_models``      :mod:`mlib.study.models`
``05_federated``    :mod:`mlib.study.federated`
``06_transfer``     :mod:`mlib.study.transfer`
==================  ===========================

Each module's functions take the notebook's checked parameters (``P``) and its :class:`mlib.outputs.Run`,
write tables and figures through it, and keep their training runs in the run store (``P.store_dir``).
"""
