"""The repository's tooling, shipped in neither distribution: shared by the tests, the demo,
the evaluation, the DPR trainer and the measuring tools; one entry, `python -m harness` (cli.py).

Ports, managed server processes and their readiness, the workload shapes and the request
bodies live here once, and one open-loop driver (load.py) serves the benchmark and the soak.
Importing this package loads nothing heavy: the locust file imports `harness.workloads`
(stdlib only) in a venv without the project.
"""
