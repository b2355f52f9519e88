"""The client as a trainer installs it: `pip install ./client` into an empty venv pulls httpx and
numpy only, imports beside a trainer's own module named `service`, and scores against a live
server (the demo pair, transformers engine) the same rewards the server sends as JSON."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness.paths import ROOT

SERVER_SIDE = ("dense_reward_server", "torch", "transformers", "fastapi", "uvicorn", "pydantic")
ITEMS = [
    {"prompt": "Sort ascending: 42 7 19 3", "completion": " 3 7 19 42"},
    {"prompt": "Sort ascending: 5 1", "completions": [" 1 5", " 5 1", " 1"]},
]
TRAINER = """
import importlib.util, json, sys
import service  # the trainer's own module of that name: neither shadows the other
from dense_reward_client import RewardClient
from dense_reward_client.adapters import trl  # noqa: F401 (imports without TRL installed)

assert service.OWNER == "trainer", service.__file__
absent = [n for n in {absent} if importlib.util.find_spec(n) is not None]
assert not absent, absent
with RewardClient(sys.argv[1]) as client:
    results = client.token_rewards(json.loads(sys.argv[2]), append_eos=True, encoding="base64")
rows = [r for result in results for r in result.get("completions", [result])]
print(json.dumps([[float(x) for x in r["rewards"]] for r in rows]))
"""


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("client-venv")
    venv.create(home / "venv", with_pip=True)
    python = home / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT / "client")],
        check=True,
        timeout=600,
    )
    return python


def test_the_client_installs_with_httpx_and_numpy_only(client_venv: Path) -> None:
    listed = subprocess.run(
        [str(client_venv), "-m", "pip", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {row["name"].lower() for row in json.loads(listed)}
    assert {"dense-reward-client", "httpx", "numpy"} <= names
    assert not names & {"dense-reward-server", "torch", "transformers", "fastapi", "uvicorn"}


def test_a_trainer_scores_with_it_beside_its_own_service_module(
    client_venv: Path, demo_url: str, tmp_path: Path
) -> None:
    (tmp_path / "service.py").write_text('OWNER = "trainer"\n')
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER.replace("{absent}", repr(SERVER_SIDE)))
    run = subprocess.run(
        [str(client_venv), str(script), demo_url, json.dumps(ITEMS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    body = {"items": ITEMS, "append_eos": True}
    answer = httpx.post(f"{demo_url}/v1/token_rewards", json=body, timeout=60).json()
    sent = [r for result in answer["results"] for r in result.get("completions", [result])]
    assert len(got) == 4
    # base64 float32 decoded in the trainer's venv: the same float32 bits as the server's JSON.
    for mine, theirs in zip(got, sent, strict=True):
        assert np.array_equal(np.float32(mine), np.float32(theirs["rewards"]))
