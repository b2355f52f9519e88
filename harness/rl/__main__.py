"""`python -m harness.rl [flags]`: the experiment (harness/rl/experiment.py);
`python -m harness.rl --report docs/rl/results.json`: its table and plot again."""

import sys
from pathlib import Path

from harness.rl.experiment import main, rerender

if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"] and len(sys.argv) == 3:
        rerender(Path(sys.argv[2]))
    else:
        main()
