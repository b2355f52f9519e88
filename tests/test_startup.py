"""Start-up refuses a pair whose vocabularies differ, naming the first difference."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.errors import StartupError
from service.runtime import load_runtime
from tests.fakes import fake_factory


def altered_copy(source: Path, target: Path) -> tuple[int, str]:
    """Copy a model folder and swap the ids of two tokens; return the lower id and its token."""
    shutil.copytree(source, target)
    path = target / "tokenizer.json"
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    (first, low), (second, high) = sorted(vocab.items(), key=lambda kv: kv[1])[300:302]
    vocab[first], vocab[second] = high, low
    path.write_text(json.dumps(data))
    return int(low), second


def test_different_vocabularies_refuse_to_start(
    demo_dir: Path, tmp_path: Path, settings_for: Any
) -> None:
    index, token = altered_copy(demo_dir / "base", tmp_path / "other")
    settings = settings_for(base_model=str(tmp_path / "other"))
    _, factory = fake_factory(vocab_size=100)
    with pytest.raises(
        StartupError, match=f"token id {index}: .* base has {re.escape(repr(token))}"
    ):
        load_runtime(settings, factory)


def test_different_vocabulary_sizes_refuse_to_start(
    demo_dir: Path, tmp_path: Path, settings_for: Any
) -> None:
    shutil.copytree(demo_dir / "base", tmp_path / "bigger")
    config_path = tmp_path / "bigger" / "config.json"
    config = json.loads(config_path.read_text())
    config["vocab_size"] += 64
    config_path.write_text(json.dumps(config))
    _, factory = fake_factory(vocab_size=100)
    with pytest.raises(StartupError, match="different vocabulary sizes"):
        load_runtime(settings_for(base_model=str(tmp_path / "bigger")), factory)


def test_cli_exits_non_zero_with_the_reason(demo_dir: Path, tmp_path: Path) -> None:
    index, _ = altered_copy(demo_dir / "base", tmp_path / "other")
    command = [
        sys.executable,
        "-m",
        "service",
        "serve",
        "--backend",
        "transformers",
        "--port",
        "0",
        "--sft-model",
        str(demo_dir / "sft"),
        "--base-model",
        str(tmp_path / "other"),
        "--log-format",
        "text",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert f"token id {index}" in done.stderr


def test_bad_settings_exit_2(demo_dir: Path) -> None:
    command = [sys.executable, "-m", "service", "serve", "--beta", "-1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "beta" in done.stderr
