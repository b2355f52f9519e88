"""Settings: DRS_* environment variables, overridden by CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dense_reward_server.config import Settings, settings_error_lines


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
        {"sft_devices": "gpu0"},
        {"base_devices": "0,"},
        {"block_size": 0},
        {"data_parallel_size": 0},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]


def test_api_keys_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("alpha\n\n beta \n")
    settings = Settings(api_keys=["gamma"], api_keys_file=path)
    path.unlink()  # read once, when the settings were made: never again
    assert settings.all_api_keys() == ["gamma", "alpha", "beta"]
    assert settings.summary()["auth"] is True


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("mykey", ["mykey"]),  # a plain key, as `vllm serve --api-key` takes it
        (" a , b ,", ["a", "b"]),
        ('["a", "b,c"]', ["a", "b,c"]),  # JSON when a key holds a comma
        ("a\nb\n", ["a", "b"]),  # $(cat keys-file)
        ("", []),
    ],
)
def test_api_keys_take_a_key_comma_separated_keys_or_json(
    value: str, keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRS_API_KEYS", value)
    assert Settings().api_keys == keys


@pytest.mark.parametrize(
    "args",
    [["--api-keys", "a,b"], ["--api-keys", "a", "--api-keys", "b"], ["--api-keys", '["a","b"]']],
)
def test_api_keys_flag_takes_the_same_forms(args: list[str]) -> None:
    assert Settings(_cli_parse_args=args).api_keys == ["a", "b"]  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("value", "binds"),
    [
        ('["0,1", "2,3"]', ["0,1", "2,3"]),
        ("0,1;2,3", ["0,1", "2,3"]),
        ("0-1,2-3", ["0-1", "2-3"]),
        ("", None),
    ],
)
def test_cpu_threads_bind_forms(
    value: str, binds: list[str] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRS_CPU_THREADS_BIND", value)
    assert Settings().cpu_threads_bind == binds


def test_engine_args_flag_keeps_its_forms() -> None:
    settings = Settings(
        _cli_parse_args=["--engine-args", '{"a": 1}', "--engine-args", "b=x"]  # type: ignore[call-arg]
    )
    assert settings.engine_args == {"a": 1, "b": "x"}


def errors_of(env: dict[str, str], args: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as caught:
        Settings(_cli_parse_args=args, _cli_exit_on_error=False)  # type: ignore[call-arg]
    return settings_error_lines(caught.value)


@pytest.mark.parametrize(
    ("env", "args", "line"),
    [
        (
            {"DRS_PORT": "70000"},
            [],
            "invalid setting DRS_PORT / --port: must be less than or equal to 65535 (got '70000')",
        ),
        (
            {"DRS_BACKEND": "tensorrt"},
            [],
            "invalid setting DRS_BACKEND / --backend: must be 'vllm' or 'transformers' "
            "(got 'tensorrt')",
        ),
        (
            {"DRS_ENGINE_ARGS": "{bad"},
            [],
            "invalid setting DRS_ENGINE_ARGS / --engine-args: must be a JSON object, e.g. "
            "'{\"enforce_eager\": true}' (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))",
        ),
        (
            {},
            ["--engine-args", "{bad"],
            "invalid setting DRS_ENGINE_ARGS / --engine-args: must be a JSON object, e.g. "
            '\'{"enforce_eager": true}\' (Missing end delimiter "}")',
        ),
        (
            {"DRS_API_KEYS_FILE": "/nonexistent/keys"},
            [],
            "invalid setting DRS_API_KEYS_FILE / --api-keys-file: must be a readable file, "
            "one key per line: No such file or directory (got '/nonexistent/keys')",
        ),
        (
            {},
            ["--beta", "-1"],
            "invalid setting DRS_BETA / --beta: must be greater than 0 (got '-1')",
        ),
        (
            {},
            ["--bogus", "1"],
            "unrecognized arguments: --bogus 1 (`dense-reward-server serve --help` lists the "
            "settings)",
        ),
        (
            {},
            ["--port"],
            "invalid setting DRS_PORT / --port: expected one argument",
        ),
        (
            {"DRS_REQUEST_TIMEOUT_S": "5000"},
            [],
            "invalid settings DRS_REQUEST_TIMEOUT_S / --request-timeout-s and "
            "DRS_MAX_REQUEST_TIMEOUT_S / --max-request-timeout-s: the default timeout (5000 s) "
            "must be <= the longest allowed (3600 s)",
        ),
        (
            {"DRS_CPU_THREADS_BIND": "0-3"},
            [],
            "invalid setting DRS_CPU_THREADS_BIND / --cpu-threads-bind: needs exactly two "
            'non-empty entries [sft, base]: a JSON list (["0-1", "2-3"]) or "SFT;BASE" (0,1;2,3) '
            "(got '0-3')",
        ),
        (
            {"DRS_API_KEYS": '["secret", 7]'},
            [],
            "invalid setting DRS_API_KEYS / --api-keys: entry 1: must be a valid string",
        ),
    ],
)
def test_each_bad_setting_is_one_line_naming_it(
    env: dict[str, str], args: list[str], line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert errors_of(env, args, monkeypatch) == [f"dense-reward-server: {line}"]


def test_two_bad_settings_are_two_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = errors_of({"DRS_LOG_LEVEL": "loud"}, ["--max-num-seqs", "0"], monkeypatch)
    assert len(lines) == 2
    assert lines[0].startswith("dense-reward-server: invalid setting DRS_MAX_NUM_SEQS / ")
    assert lines[1] == (
        "dense-reward-server: invalid setting DRS_LOG_LEVEL / --log-level: must be 'debug', "
        "'info', 'warning' or 'error' (got 'loud')"
    )


def test_api_keys_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = errors_of({"DRS_API_KEYS": '["hunter2", {}]'}, [], monkeypatch)
    assert "DRS_API_KEYS" in line and "hunter2" not in line


def test_api_keys_file_must_be_readable(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="Is a directory"):
        Settings(api_keys_file=tmp_path)
    (tmp_path / "keys").write_bytes(b"\xff\xfe")
    with pytest.raises(ValidationError, match="UTF-8"):
        Settings(api_keys_file=tmp_path / "keys")


@pytest.mark.parametrize(
    "value",
    ['{"half": "ckpt/half", "early": "ckpt/early"}', "half=ckpt/half, early=ckpt/early"],
)
def test_extra_baselines_take_json_or_name_path_pairs(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRS_EXTRA_BASELINES", value)
    settings = Settings(_cli_parse_args=["--reward-baselines", "base,half"])
    assert settings.extra_baselines == {"half": "ckpt/half", "early": "ckpt/early"}
    assert settings.baseline_names() == ["base", "half", "early"]
    assert settings.reward_baselines == ["base", "half"]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"DRS_EXTRA_BASELINES": "sft=ckpt/x"},
            "invalid setting DRS_EXTRA_BASELINES / --extra-baselines: baseline name 'sft' must "
            "be lowercase letters, digits, - or _ and not sft or base (got 'sft=ckpt/x')",
        ),
        (
            {"DRS_EXTRA_BASELINES": "half"},
            "invalid setting DRS_EXTRA_BASELINES / --extra-baselines: must be name=path pairs "
            "separated by commas, or a JSON object (got 'half')",
        ),
        (
            {"DRS_REWARD_BASELINES": "half"},
            "invalid setting DRS_REWARD_BASELINES / --reward-baselines: 'half' is not a loaded "
            "baseline (loaded: base)",
        ),
        (
            {"DRS_EXTRA_BASELINES": "half=x", "DRS_BASELINE": "none"},
            "invalid settings DRS_EXTRA_BASELINES / --extra-baselines and DRS_BASELINE / "
            "--baseline: extra baselines need baseline=model",
        ),
        (
            {"DRS_REWARD_CLIP_MIN": "2", "DRS_REWARD_CLIP_MAX": "1"},
            "invalid settings DRS_REWARD_CLIP_MIN / --reward-clip-min and DRS_REWARD_CLIP_MAX / "
            "--reward-clip-max: the bounds are reversed (2.0 > 1.0)",
        ),
        (
            {"DRS_AUDIT_REPORT": "/nonexistent/audit.json"},
            "invalid setting DRS_AUDIT_REPORT / --audit-report: must be a report written by "
            "`dense-reward-server audit --out`: No such file or directory (got "
            "'/nonexistent/audit.json')",
        ),
        (
            {"DRS_REF_LOGPROB_FLOOR": "3"},
            "invalid setting DRS_REF_LOGPROB_FLOOR / --ref-logprob-floor: must be less than or "
            "equal to 0 (got '3')",
        ),
    ],
)
def test_bad_reward_settings_are_one_line(
    env: dict[str, str], line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert errors_of(env, [], monkeypatch) == [f"dense-reward-server: {line}"]
