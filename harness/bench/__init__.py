"""The benchmark (entry point: python -m harness bench; loadtest/README.md says what it measures).

options: the command line. cli: main. systems, peer, loop: the three systems compared, behind
one interface. clients and drive: the load generator over HTTP. sweep: calibration, sweep
points, their figures. mfu, report, environment: what the report adds to the figures.
"""
