"""Start-up refuses a pair whose vocabularies differ, naming the first difference."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dense_reward_server.core.runtime import load_runtime
from dense_reward_server.errors import StartupError
from harness.fakes import fake_factory
from harness.models import swapped_tokens_copy
from harness.servers import serve_command


def test_different_vocabularies_refuse_to_start(
    demo_dir: Path, tmp_path: Path, settings_for: Any
) -> None:
    index, token = swapped_tokens_copy(demo_dir / "base", tmp_path / "other")
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


def serve(sft: Path, base: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = serve_command(
        *flags, backend="transformers", port=0, sft_model=sft, base_model=base, log_format="text"
    )
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def broken_config(demo_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    shutil.copytree(demo_dir / "base", tmp_path / "broken")
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "llama", ')
    return tmp_path / "broken", "config"


def missing_model(demo_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "no-such-model", "no-such-model"


def other_vocabulary(demo_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    index, _ = swapped_tokens_copy(demo_dir / "base", tmp_path / "other")
    return tmp_path / "other", f"token id {index}"


@pytest.mark.parametrize("make_base", [broken_config, missing_model, other_vocabulary])
def test_startup_failure_is_one_line_and_non_zero(
    demo_dir: Path, tmp_path: Path, make_base: Any
) -> None:
    base, reason = make_base(demo_dir, tmp_path)
    done = serve(demo_dir / "sft", base)
    assert done.returncode == 3, done.stderr
    refusals = [line for line in done.stderr.splitlines() if "refusing to start" in line]
    assert len(refusals) == 1 and reason in refusals[0], done.stderr
    assert "Traceback" not in done.stderr
    # Nothing else but uvicorn's own two start-up lines and the settings summary.
    assert len(done.stderr.strip().splitlines()) <= 5, done.stderr


def test_startup_failure_shows_the_traceback_at_debug(demo_dir: Path, tmp_path: Path) -> None:
    base, _ = missing_model(demo_dir, tmp_path)
    done = serve(demo_dir / "sft", base, "--log-level", "debug")
    assert done.returncode == 3
    assert "Traceback" in done.stderr and "refusing to start" in done.stderr
