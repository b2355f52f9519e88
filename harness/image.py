"""`make test-image`: the built CPU image serving, started from its own filesystem.

    .venv/bin/python -m harness image [--image dense-reward-server:0.1.0-cpu]

`podman run` is refused on this machine (crun cannot set RLIMIT_NOFILE), so this does what a
container runtime would, by hand and as root: the image's filesystem (`podman image mount`)
bound read-only as the root, tmpfs where the image says it writes (/tmp, its HOME), /proc,
/sys and /dev, the demo pair bound read-only at /models, then the image's entrypoint and
command run under `chroot --userspec` as the image's user, with the image's environment and
working directory and nothing of ours but two overrides: loopback host and a free port. It
checks that /ready turns 200, that one scoring request answers the same rewards as this
checkout's server, and that SIGTERM drains and exits 0. Reports to
loadtest/results/image-test-UTC.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from harness.bench.environment import run_record
from harness.paths import DEMO, RESULTS, pair_settings
from harness.ports import HOST, free_port, loopback_url
from harness.processes import ManagedProcess
from harness.servers import ServiceProcess, wait_ready

REQUEST = {
    "items": [
        {"prompt": "Sort ascending: 42 7 19 3", "completion": " 3 7 19 42"},
        {"messages": [{"role": "user", "content": "Sort ascending: 5 1 4"}], "completion": "1 4 5"},
        {"prompt_token_ids": [5, 6, 7, 8], "completions": [[9, 10, 11], [12, 13]]},
    ],
    "append_eos": True,
}


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def image_config(image: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(run("podman", "image", "inspect", image))[0]["Config"]
    return config


class Mounts:
    """Mounts made in order and undone in reverse, whatever happens in between."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def mount(self, *args: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        run("mount", *args, str(target))
        self.points.append(target)

    def bind_read_only(self, source: Path, target: Path) -> None:
        self.mount("--bind", str(source), target=target)
        run("mount", "--make-rprivate", str(target))
        run("mount", "-o", "remount,bind,ro", str(target))

    def undo(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], check=False)
        self.points.clear()


def image_home(config: dict[str, Any]) -> str:
    """The image's HOME (where it says it writes beside /tmp), or "" when it sets none."""
    env = dict(str(entry).split("=", 1) for entry in config.get("Env", []) if "=" in entry)
    return env.get("HOME", "")


def user_ids(config: dict[str, Any]) -> tuple[str, str]:
    user, _, group = str(config.get("User") or "0").partition(":")
    return user, group or user


@contextlib.contextmanager
def image_root(image: str, models: Path, config: dict[str, Any]) -> Iterator[Path]:
    """The image's filesystem as a read-only root with its writable places on tmpfs."""
    source = Path(run("podman", "image", "mount", image))
    mounts = Mounts()
    root = Path(tempfile.mkdtemp(prefix="drs-image-root-"))
    uid, gid = user_ids(config)
    home = image_home(config)
    try:
        mounts.bind_read_only(source, root)
        mounts.mount("-t", "proc", "proc", target=root / "proc")
        mounts.bind_read_only(Path("/sys"), root / "sys")
        mounts.mount("--rbind", "/dev", target=root / "dev")
        # Private, so that the tmpfs mounted on its shm below never reaches the host's /dev.
        run("mount", "--make-rprivate", str(root / "dev"))
        mounts.mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", target=root / "dev" / "shm")
        mounts.mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", target=root / "tmp")
        if home:
            options = f"mode=0755,uid={uid},gid={gid}"
            mounts.mount("-t", "tmpfs", "-o", options, "tmpfs", target=root / home.lstrip("/"))
        mounts.bind_read_only(models, root / "models")
        yield root
    finally:
        mounts.undo()
        subprocess.run(["podman", "image", "unmount", image], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            root.rmdir()


def written(root: Path, config: dict[str, Any]) -> dict[str, str]:
    """What the server left in its writable places (du -sh), before they go."""
    home = image_home(config)
    places = ["tmp", home.lstrip("/")] if home else ["tmp"]
    return {"/" + p: run("du", "-sh", str(root / p)).split()[0] for p in places}


def score(url: str) -> list[np.ndarray]:
    answer = httpx.post(url + "/v1/token_rewards", json=REQUEST, timeout=300)
    answer.raise_for_status()
    rewards = []
    for result in answer.json()["results"]:
        for member in result.get("completions", [result]):
            rewards.append(np.asarray(member["rewards"], dtype=np.float32))
    return rewards


def serve_image(image: str, models: Path) -> dict[str, Any]:
    config = image_config(image)
    uid, gid = user_ids(config)
    port = free_port()
    overrides = {"DRS_HOST": HOST, "DRS_PORT": str(port)}
    env = [e for e in config.get("Env", []) if e.split("=", 1)[0] not in overrides]
    env += [f"{k}={v}" for k, v in overrides.items()]
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    workdir = config.get("WorkingDir") or "/"
    with image_root(image, models, config) as root:
        server = ManagedProcess(
            ["chroot", f"--userspec={uid}:{gid}", str(root),
             "/usr/bin/env", "-i", "-C", workdir, *env, *command],
            name="image-server",
        )  # fmt: skip
        try:
            ready_s = wait_ready(loopback_url(port) + "/ready", [server], timeout_s=900)
            rewards = score(loopback_url(port))
            health = httpx.get(loopback_url(port) + "/v1/models", timeout=30).json()
            leftovers = written(root, config)
        finally:
            exit_status = server.stop()
    return {
        "image": image,
        "user": f"{uid}:{gid}",
        "entrypoint": command,
        "workdir": workdir,
        "overrides": overrides,
        "ready_s": round(ready_s, 1),
        "exit_status_after_sigterm": exit_status,
        "written": leftovers,
        "engines": [m["engine_version"] for m in health["data"]],
        "rewards": rewards,
    }


def serve_checkout(models: Path) -> list[np.ndarray]:
    server = ServiceProcess(name="image-reference", backend="vllm", **pair_settings(models))
    try:
        server.wait_ready()
        return score(server.url)
    finally:
        server.stop()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness image", description=__doc__)
    parser.add_argument("--image", default="dense-reward-server:0.1.0-cpu")
    parser.add_argument("--models", type=Path, default=DEMO)
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    report = serve_image(args.image, args.models.resolve())
    reference = serve_checkout(args.models.resolve())
    got = report.pop("rewards")
    report["sequences_compared"] = len(got)
    report["max_abs_diff_vs_checkout"] = max(
        float(np.max(np.abs(a - b))) for a, b in zip(got, reference, strict=True)
    )
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    path = RESULTS / f"image-test-{started_at:%Y%m%dT%H%M%SZ}.json"
    record = {**run_record("python -m harness image", started_at), **report}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = report["exit_status_after_sigterm"] == 0 and report["max_abs_diff_vs_checkout"] <= 1e-5
    raise SystemExit(0 if ok else 1)
