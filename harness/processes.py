"""A child process in its own session, logging to a file, stopped together with its children."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from harness.paths import LOG_DIR, ROOT


class ManagedProcess:
    """`command` started in its own session (so its engine processes form one group with it).

    Output is appended to `LOG_DIR/<name>.log` after a header line naming the command.
    `stop()` sends SIGTERM to the leader only: the service drains and then stops its own
    engines, whereas a group-wide SIGTERM would reach the engines first and turn a clean
    drain into an engine failure. Whatever is left of the group afterwards is killed.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.command = list(command)
        self.log_path = LOG_DIR / f"{name}.log"
        self.log = self.log_path.open("ab")
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.log.write(f"--- {started} {shlex.join(self.command)}\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(
            self.command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 120.0) -> int:
        """Stops the process (idempotent) and returns its exit status."""
        if self.alive():
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # engines that outlived the leader
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


def tree_rss_bytes(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (0 once it has gone)."""
    try:
        procs = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total
