"""The one harness shared by the tests, the benchmark (`make bench`), the soak and `bench/`.

Ports, managed server processes and their readiness, the workload shapes and the request
bodies live here once; `harness.bench` and `harness.soak` are the two load drivers built on
them (entry points: python -m harness bench, python -m harness soak). Importing this package loads
nothing heavy: the locust file imports `harness.workloads` in a venv without the project.
"""
