"""Federated training: clients keep their crystals, only weights travel (FedAvg, FedProx).

``partition`` splits the training crystals among clients, ``client`` is the local update every client
runs, ``aggregate`` the server's side, ``simulation`` the in-process engine (deterministic, what the
notebooks run). Over Flower's deployment engine, for real multi-site runs: ``task`` (what both apps
share), ``client_app`` and ``server_app`` (Flower's ClientApp and ServerApp), ``strategy`` (the
server's named strategy class) and ``flower`` (the command line: SuperLink, sites, ``flwr run``).
"""
