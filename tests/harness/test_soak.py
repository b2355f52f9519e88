"""The soak test (python -m harness soak), bounded for CI: a real vLLM server process over loopback,
open-loop load above saturation with valid, invalid and huge requests and abrupt disconnects.
Longer runs by hand: `python -m harness soak --duration-s 600` (README, Reliability).
The server's log: results/logs/soak-server.log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from harness.paths import ROOT
from harness.soak.run import run

REPORT = ROOT / "results" / "soak.json"


@pytest.mark.vllm
def test_soak_above_saturation_loses_nothing(demo_dir: Path) -> None:
    args = argparse.Namespace(
        url=None, demo=str(demo_dir), backend="vllm", rate=12.0, duration_s=45.0, seed=0
    )
    report = run(args)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsoak: {json.dumps({k: report[k] for k in ('sent', 'answered', 'refused')})}")
    assert report["failed"] == 0, report["failures"]
    assert report["mismatched"] == 0
    assert report["checked_results"] > 0
    # Above saturation, with every kind of bad request in the mix, every refusal happened.
    assert all(report["refused"][code] > 0 for code in ("413", "422", "429")), report["refused"]
    assert report["disconnected"] > 0
    # One-sample traffic (a group as 8 concurrent one-item requests) was answered and checked.
    assert report["by_kind"]["one_sample"].get("200", 0) > 0, report["by_kind"]
    # Afterwards: still ready, nothing left in flight (disconnected work was aborted).
    assert report["after"]["ready_status"] == 200
    assert report["after"]["drs_inflight_requests"] == 0
    assert report["after"]["drs_inflight_tokens"] == 0
    assert report["server_exit_status"] == 0
    assert report["peak_rss_mb"] > 0
