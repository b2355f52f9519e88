"""The house drawn from the imports: each layer imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.paths import ROOT

SERVICE = ROOT / "service"
WEB = ("fastapi", "starlette", "uvicorn")
# What each package may not import (a module's own package is always allowed).
FORBIDDEN = {
    "core": (*WEB, "service.api", "service.cli"),
    "rewards": (*WEB, "service.api", "service.core", "service.engines", "vllm", "torch"),
    "engines": (*WEB, "service.api", "service.core", "service.rewards"),
    "evaluation": (*WEB, "service.api.app", "service.api.routes"),
    # The trainer reaches the reward model over HTTP only, as any trainer would; from the
    # server's code it takes only the tokenizer fingerprint every client sends.
    "rl": (
        *WEB,
        *(f"service.{name}" for name in ("api", "core", "engines", "evaluation")),
        *(f"service.rewards.{name}" for name in ("encoding", "groups", "items", "maths", "steps")),
        "vllm",
    ),
}
BOTTOM = ("config.py", "errors.py", "metrics.py", "sequence.py", "logs.py")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_run_one_way(package: str) -> None:
    found = {
        str(path.relative_to(ROOT)): bad
        for path in sorted((SERVICE / package).rglob("*.py"))
        if (bad := offending(path, FORBIDDEN[package]))
    }
    assert found == {}


def test_bottom_modules_import_no_web_framework_and_no_engine() -> None:
    forbidden = (*WEB, "vllm", "torch", "transformers", "service.api", "service.core")
    found = {name: offending(SERVICE / name, forbidden) for name in BOTTOM}
    assert {name: bad for name, bad in found.items() if bad} == {}


def test_the_check_sees_an_import() -> None:
    assert offending(SERVICE / "api" / "app.py", WEB) == ["fastapi", "fastapi.staticfiles"]
