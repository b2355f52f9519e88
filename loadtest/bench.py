"""Entry point of the benchmark (`make bench`): harness/bench/ holds it, options.py its flags.

.venv/bin/python loadtest/bench.py [--quick] [--systems ...] [--shapes ...] [--reanalyze F]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness, run from anywhere

from harness.bench.cli import main

if __name__ == "__main__":
    main()
