"""nginx in front of service replicas, with prompt affinity (deploy/nginx/).

`Nginx(upstreams).start()` renders drs-affinity.conf.template into a fresh prefix folder, runs
`nginx -p PREFIX -c PREFIX/nginx.conf -g 'daemon off;'` unprivileged on loopback, and waits
until it answers; `stop()` ends it and appends its error and access logs (the replica each
request went to) to LOG_DIR/<name>.log, like every process the harness starts.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from harness.paths import ROOT
from harness.ports import HOST, free_port, loopback_url
from harness.processes import ManagedProcess
from harness.tools import ToolMissing

TEMPLATE = ROOT / "deploy" / "nginx" / "drs-affinity.conf.template"
TOOLS_NGINX = ROOT / ".tools" / "bin" / "nginx"


def find_nginx() -> str:
    """The nginx binary: .tools/bin/nginx (`make tools`), else the one on the PATH."""
    if TOOLS_NGINX.is_file() and os.access(TOOLS_NGINX, os.X_OK):
        return str(TOOLS_NGINX)
    found = shutil.which("nginx")
    if found is None:
        raise ToolMissing(
            "nginx not found in .tools/bin or on the PATH: run `make tools` "
            "(scripts/install_tools.sh unpacks Debian's nginx into .tools/bin)"
        )
    return found


def host_port(url: str) -> str:
    """`host:port` of a replica's base URL (http://127.0.0.1:8000)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"not an http://host:port URL: {url}")
    if parts.path.strip("/"):
        raise ValueError(f"a replica URL has no path: {url}")
    return f"{parts.hostname}:{parts.port}"


def render_config(upstreams: Sequence[str], listen: str) -> str:
    """The template with its placeholders filled: `listen` is host:port, `upstreams` URLs."""
    if not upstreams:
        raise ValueError("no upstream replicas")
    servers = "\n".join(
        f"        server {host_port(url)} max_fails=1 fail_timeout=10s;" for url in upstreams
    )
    text = TEMPLATE.read_text().replace("@LISTEN@", listen).replace("@SERVERS@", servers)
    unfilled = re.findall(r"@[A-Z_]+@", text)
    if unfilled:  # a placeholder the template gained and this function does not know
        raise ValueError(f"unfilled placeholders in {TEMPLATE}: {unfilled}")
    return text


class Nginx:
    """nginx balancing over `upstreams` (replica base URLs), listening on loopback `port`."""

    def __init__(
        self, upstreams: Sequence[str], *, port: int | None = None, name: str = "nginx"
    ) -> None:
        self.upstreams = list(upstreams)
        self.port = port if port is not None else free_port()
        self.url = loopback_url(self.port)
        self.name = name
        self.prefix = Path(tempfile.mkdtemp(prefix="drs-nginx-"))
        # Started as root, nginx runs its worker as `nobody`, which must reach temp/ in here.
        self.prefix.chmod(0o755)
        self.config = self.prefix / "nginx.conf"
        self.process: ManagedProcess | None = None

    def start(self, timeout_s: float = 30) -> Nginx:
        (self.prefix / "logs").mkdir(exist_ok=True)
        (self.prefix / "temp").mkdir(exist_ok=True)
        self.config.write_text(render_config(self.upstreams, f"{HOST}:{self.port}"))
        command = [find_nginx(), "-p", f"{self.prefix}/", "-c", str(self.config)]
        self.process = ManagedProcess([*command, "-g", "daemon off;"], name=self.name)
        self.wait_answering(timeout_s)
        return self

    def wait_answering(self, timeout_s: float) -> None:
        """Until nginx accepts connections. Not an HTTP probe: that would reach a replica, and
        one not up yet would count as failed and be left out for 10 s (fail_timeout)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(
                    f"nginx exited with {self.process.proc.returncode}; see "
                    f"{self.process.log_path}:\n{self.error_log()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"nginx on {self.url} not answering after {timeout_s:.0f} s")

    def error_log(self) -> str:
        return self._read_log("error.log")

    def access_log(self) -> list[str]:
        """One line per request: status, key, the replica(s) tried (`a, b` when nginx retried)."""
        return self._read_log("access.log").splitlines()

    def _read_log(self, name: str) -> str:
        path = self.prefix / "logs" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> int:
        """Stops nginx (SIGTERM: fast shutdown), keeps its logs, removes the prefix folder."""
        code = 0
        if self.process is not None:
            code = self.process.stop(timeout_s=30)
            with self.process.log_path.open("a") as log:
                for name in ("error.log", "access.log"):
                    log.write(f"--- {name}\n{self._read_log(name)}")
            self.process = None
        shutil.rmtree(self.prefix, ignore_errors=True)
        return code

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
