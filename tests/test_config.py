"""Settings: DRS_* environment variables, overridden by CLI flags."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings


def test_env_then_cli_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRS_BETA", "0.25")
    monkeypatch.setenv("DRS_BACKEND", "transformers")
    monkeypatch.setenv("DRS_ENGINE_ARGS", '{"enable_prefix_caching": false}')
    settings = Settings(_cli_parse_args=["--backend", "vllm", "--max-items-per-request", "7"])
    assert settings.beta == 0.25
    assert settings.backend == "vllm"
    assert settings.max_items_per_request == 7
    assert settings.engine_args == {"enable_prefix_caching": False}


def test_defaults_are_safe() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1" and settings.is_loopback()
    assert settings.beta == 1.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"beta": 0.0},
        {"backend": "onnx"},
        {"cpu_threads_bind": ["0"]},
        {"request_timeout_s": 10, "max_request_timeout_s": 5},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]


def test_api_keys_file_is_read(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "keys"
    path.write_text("alpha\n\n beta \n")
    settings = Settings(api_keys=["gamma"], api_keys_file=path)
    assert settings.all_api_keys() == ["gamma", "alpha", "beta"]
