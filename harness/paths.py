"""Where the harness finds the repository, the demo pair and writes server logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".models" / "demo"
# Every measurement the repository keeps (benchmarks, soak, image test), each opening with its
# run record (harness.bench.environment.run_record). The RL experiment's are in docs/rl/.
RESULTS = ROOT / "loadtest" / "results"
# Ignored by git (/results/): logs of every process the harness starts, appended per run.
LOG_DIR = ROOT / "results" / "logs"


def pair_settings(folder: Path) -> dict[str, Any]:
    """The settings naming a pair's two models: FOLDER/sft and FOLDER/base (the demo's layout)."""
    return {"sft_model": str(folder / "sft"), "base_model": str(folder / "base")}
