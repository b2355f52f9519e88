"""Soak test: open-loop load above saturation with valid, invalid and huge requests and abrupt
disconnects, against a real server process over loopback; every returned reward is checked.

Entry point: `python -m harness soak` (cli.py's docstring says what the report holds);
tests/harness/test_soak.py runs `run` for 45 s. mix: what is sent and what each kind may get
back. run: the driver.
"""
