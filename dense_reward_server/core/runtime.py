"""What the server loads at start-up: the SFT tokenizer, the vocabulary check, both engines."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from dense_reward_server.config import Settings, setting_names
from dense_reward_server.engines.base import EngineInfo, EnginePair
from dense_reward_server.engines.factory import LoadedPair
from dense_reward_server.engines.vocab import check_same_vocabulary
from dense_reward_server.errors import StartupError
from dense_reward_server.rewards.tokenization import RewardTokenizer

logger = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], LoadedPair]


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything loaded at start-up that a request needs."""

    settings: Settings
    tokenizer: RewardTokenizer
    engines: EnginePair
    load_seconds: dict[str, float]

    @property
    def max_model_len(self) -> int:
        engines = min(engine.info.max_model_len for engine in self.engines.engines)
        return min(engines, self.settings.max_model_len or engines)

    def engine_infos(self) -> list[EngineInfo]:
        return [engine.info for engine in self.engines.engines]


def model_vocab_size(path: str, revision: str | None) -> int:
    config = AutoConfig.from_pretrained(path, revision=revision)
    return int(config.get_text_config().vocab_size)


def check_local_paths(settings: Settings) -> None:
    """A model given as a path (not a hub id) must be a folder: say so, not "bad repo id"."""
    models = [("sft_model", "sft_model", settings.sft_model)]
    if settings.baseline == "model":
        models.append(("base_model", "base_model", settings.base_model))
    for extra, model in settings.extra_baselines.items():
        models.append((f"baseline {extra!r}", "extra_baselines", model))
    for name, setting, model in models:
        # A hub id is "name" or "org/name"; anything else that names no folder is a path.
        looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1
        looks_local = looks_local or Path(model).exists()
        if looks_local and not Path(model).expanduser().is_dir():
            raise StartupError(f"{name} {model!r} is not a folder ({setting_names(setting)})")


def load_runtime(settings: Settings, engine_factory: EngineFactory) -> Runtime:
    """Check the pair is compatible (cheap), then start the engines (slow)."""
    check_local_paths(settings)
    try:
        sft_tok = AutoTokenizer.from_pretrained(settings.sft_model, revision=settings.sft_revision)
        sft_vocab = model_vocab_size(settings.sft_model, settings.sft_revision)
        if settings.baseline == "model":
            base_tok = AutoTokenizer.from_pretrained(
                settings.base_model, revision=settings.base_revision
            )
            base_vocab = model_vocab_size(settings.base_model, settings.base_revision)
            check_same_vocabulary(sft_tok, base_tok, sft_vocab, base_vocab)
        for model in settings.extra_baselines.values():
            extra_tok = AutoTokenizer.from_pretrained(model)
            check_same_vocabulary(sft_tok, extra_tok, sft_vocab, model_vocab_size(model, None))
    except (OSError, ValueError) as error:
        raise StartupError(f"cannot load the models' tokenizer or config: {error}") from error
    loaded = engine_factory(settings)
    tokenizer = RewardTokenizer(sft_tok, sft_vocab)
    runtime = Runtime(settings, tokenizer, loaded.pair, loaded.load_seconds)
    logger.info(
        "models ready",
        extra={
            "engines": [vars_of(info) for info in runtime.engine_infos()],
            "max_model_len": runtime.max_model_len,
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "load_seconds": loaded.load_seconds,
        },
    )
    return runtime


def vars_of(info: EngineInfo) -> dict[str, object]:
    return {name: getattr(info, name) for name in info.__slots__}
