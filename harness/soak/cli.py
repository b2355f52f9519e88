"""Soak test: open-loop load above saturation with valid, invalid and huge requests and abrupt
disconnects, against a real server process over loopback; every returned reward is checked.

    python -m harness soak --duration-s 600 --rate 8          # by hand, minutes
    python -m harness soak --url http://127.0.0.1:8000 ...     # against a running server

Without --url it starts `dense-reward-server serve` (vLLM engines, the demo pair) with tight
admission limits so that load above saturation meets 429s, not an unbounded queue. Arrivals
are Poisson at --rate; each request is drawn from a fixed mix (seeded; harness/soak/mix.py).
Afterwards every 200 answer's rewards are compared with a reference computed separately (the
transformers engine, in this process) and the server must still be ready with nothing in
flight. Report (JSON, --out): sent, answered, refused by status, failed (valid requests that
got anything but 200/429: must be 0), mismatched results (must be 0), disconnects, peak RSS of
the server and its engine processes, and the latency distribution of answered requests.
The server's log: results/logs/soak-server.log.
"""

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from harness.bench.environment import run_record
from harness.paths import DEMO, RESULTS
from harness.soak.run import run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m harness soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument("--demo", default=str(DEMO))
    parser.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    parser.add_argument("--rate", type=float, default=8.0, help="offered requests per second")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON report (default: loadtest/results/soak-UTC)"
    )
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    report = {**run_record("python -m harness soak", started), **run(args)}
    text = json.dumps(report, indent=2)
    out = args.out or RESULTS / f"soak-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    sys.exit(0 if report["failed"] == 0 and report["mismatched"] == 0 else 1)
