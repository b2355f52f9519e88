"""`dense-reward-server serve` with a bad setting: exit 2, one line naming it, no traceback.

Each run fails while reading its settings, before any model loads: about import time.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.paths import ROOT


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("DRS_")}
    return subprocess.run(
        [sys.executable, "-m", "dense_reward_server", "serve", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "args", "names"),
    [
        ({"DRS_PORT": "70000"}, [], "DRS_PORT / --port: must be less than or equal to 65535"),
        ({"DRS_BACKEND": "tensorrt"}, [], "DRS_BACKEND / --backend: must be 'vllm' or"),
        ({"DRS_ENGINE_ARGS": "{bad"}, [], "DRS_ENGINE_ARGS / --engine-args: must be a JSON"),
        ({"DRS_API_KEYS_FILE": "/nonexistent"}, [], "DRS_API_KEYS_FILE / --api-keys-file:"),
        ({}, ["--beta", "-1"], "DRS_BETA / --beta: must be greater than 0 (got '-1')"),
        ({}, ["--bogus", "1"], "unrecognized arguments: --bogus 1"),
        ({"DRS_REQUEST_TIMEOUT_S": "5000"}, [], "DRS_REQUEST_TIMEOUT_S / --request-timeout-s"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line(
    env: dict[str, str], args: list[str], names: str
) -> None:
    done = serve(env, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dense-reward-server: ") and names in lines[0], lines[0]


def test_help_still_lists_the_settings() -> None:
    done = serve({}, "--help")
    assert done.returncode == 0, done.stderr
    assert "--api-keys" in done.stdout and "comma-separated" in done.stdout
