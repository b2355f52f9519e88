"""Build the engine pair the settings ask for: SFT first, then base (never both at once).

Start-up fails as one line that names the role, the model and the root cause: the weights are
read before any engine starts (a broken file is named before minutes of loading), and an
engine that fails after another has started leaves nothing running behind it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from dense_reward_server.config import Settings, setting_names
from dense_reward_server.engines.base import EnginePair, ScoringEngine
from dense_reward_server.engines.options import hf_options, vllm_options
from dense_reward_server.errors import StartupError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedPair:
    pair: EnginePair
    load_seconds: dict[str, float]


@dataclass(frozen=True, slots=True)
class Role:
    name: str  # sft, base, or an extra baseline's name
    model: str
    revision: str | None

    def failed(self, what: str, error: BaseException) -> StartupError:
        known = self.name in ("sft", "base")
        setting = setting_names(f"{self.name}_model" if known else "extra_baselines")
        return StartupError(
            f"the {self.name} model {self.model!r} ({setting}): {what}: {root_cause(error)}"
        )


def roles(settings: Settings) -> list[Role]:
    found = [Role("sft", settings.sft_model, settings.sft_revision)]
    if settings.baseline == "model":
        found.append(Role("base", settings.base_model, settings.base_revision))
    found += [Role(name, model, None) for name, model in settings.extra_baselines.items()]
    return found


def load_engine_pair(settings: Settings) -> LoadedPair:
    """Check every model's weights, then start the engines one after the other; if one fails,
    shut down those already started and raise StartupError naming the failed one."""
    wanted = roles(settings)
    for role in wanted:
        check_weights(role)
    seconds: dict[str, float] = {}
    engines: list[ScoringEngine] = []
    try:
        for role in wanted:
            start = time.perf_counter()
            try:
                engines.append(_start_engine(settings, role))
            except StartupError:
                raise
            except Exception as error:
                raise role.failed("its engine failed to start", error) from error
            seconds[role.name] = time.perf_counter() - start
            rounded = round(seconds[role.name], 2)
            logger.info("engine loaded", extra={"role": role.name, "seconds": rounded})
    except BaseException:
        for engine in reversed(engines):
            _shutdown_quietly(engine)
        raise
    by_name = {role.name: engine for role, engine in zip(wanted, engines, strict=True)}
    sft, base = by_name.pop("sft"), by_name.pop("base", None)
    return LoadedPair(EnginePair(sft, base, by_name), seconds)


def check_weights(role: Role) -> None:
    """Open each safetensors file of a local model (its header and size only, no tensors).

    vLLM loads weights in its engine-core process, whose error reaches this process as
    "Engine core initialization failed": the cause would be 200 lines up in the log.
    """
    folder = Path(role.model).expanduser()
    if not folder.is_dir():
        return  # a hub id: the engine resolves it
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="numpy"):
                pass
        except Exception as error:
            raise role.failed(f"cannot read {path.name}", error) from error


def root_cause(error: BaseException) -> str:
    """The innermost exception of a chain, as `Type: first line`."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _start_engine(settings: Settings, role: Role) -> ScoringEngine:
    if settings.backend == "transformers":
        from dense_reward_server.engines.hf_engine import HFScoringEngine

        hf = hf_options(settings)
        return HFScoringEngine(role.name, role.model, revision=role.revision, **hf)
    try:
        from dense_reward_server.engines.vllm_engine import VLLMScoringEngine, on_cpu, visible_gpus
    except ImportError as error:
        raise StartupError(
            f"backend 'vllm' needs vLLM installed ({error}); install the 'cpu' or 'gpu' extra "
            "or start with --backend transformers"
        ) from error
    options = vllm_options(
        settings, role.name, role.model, role.revision, cpu=on_cpu(), visible_gpus=visible_gpus()
    )
    return VLLMScoringEngine.start(role.name, options)


def _shutdown_quietly(engine: ScoringEngine) -> None:
    try:
        engine.shutdown()
    except Exception:  # already failing: the original error matters more
        logger.exception("engine shutdown failed", extra={"role": engine.info.role})
