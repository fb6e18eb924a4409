"""Federated training: clients keep their crystals, only weights travel (FedAvg, FedProx).

``partition`` splits the training crystals among clients, ``client`` is the local update every
client runs, ``aggregate`` the server's side, ``simulation`` the in-process engine (deterministic,
what CI runs) and ``flower`` the same update and aggregation over Flower for real multi-site runs.
"""
