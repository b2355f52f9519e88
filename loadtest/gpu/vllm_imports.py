"""Which third-party modules a vLLM wheel imports at module level from given entry modules.

Static: parses the wheel's Python sources (never imports them) and follows module-level
imports (not those inside functions, not under `if TYPE_CHECKING`) through vllm's own
modules; imports inside try/except or if blocks are reported apart as optional. Used to decide which
wheels to carry to the GPU machine (loadtest/README.md, "On a GPU machine").

    python loadtest/gpu/vllm_imports.py WHEEL_OR_SRC_DIR [entry.module ...]
"""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

ENTRIES = [
    "vllm.entrypoints.openai.api_server",  # the peer servers
    "vllm.v1.engine.async_llm",  # the service's engines
    "vllm.v1.engine.core",
    "vllm.v1.worker.gpu_worker",
    "vllm.v1.worker.gpu_model_runner",
    "vllm.model_executor.models.llama",
    "vllm.v1.attention.backends.flash_attn",
]


def sources(path: Path) -> dict[str, str]:
    """module name -> source text, for every vllm/**.py in a wheel or an unpacked folder."""
    out: dict[str, str] = {}
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.startswith("vllm/") and name.endswith(".py"):
                    out[module_name(name)] = zf.read(name).decode("utf-8", "replace")
    else:
        for file in path.rglob("vllm/**/*.py"):
            out[module_name(str(file.relative_to(path)))] = file.read_text("utf-8", "replace")
    return out


def module_name(rel: str) -> str:
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_imports(mod: str, src: str, is_pkg: bool) -> list[tuple[str, bool]]:
    """(imported module, optional) for module-level imports."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    found: list[tuple[str, bool]] = []
    package = mod if is_pkg else mod.rpartition(".")[0]

    def visit(body: list[ast.stmt], optional: bool) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((a.name, optional) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.append((target, optional))
                found.extend((f"{target}.{a.name}", optional) for a in node.names)
            elif isinstance(node, ast.If):
                # Conditional imports (platform checks, env flags) count as optional.
                if not is_type_checking(node.test):
                    visit(node.body, True)
                visit(node.orelse, True)
            elif isinstance(node, ast.Try):
                visit(node.body, True)
                for handler in node.handlers:
                    visit(handler.body, True)
                visit(node.orelse, optional)
                visit(node.finalbody, optional)
            elif isinstance(node, ast.With):
                visit(node.body, optional)

    visit(tree.body, False)
    return found


def main() -> None:
    path = Path(sys.argv[1])
    entries = sys.argv[2:] or ENTRIES
    srcs = sources(path)
    pkgs = {m for m in srcs if any(k.startswith(m + ".") for k in srcs)}
    seen: set[tuple[str, bool]] = set()
    required: dict[str, str] = {}
    optional: dict[str, str] = {}
    stack = [(e, False) for e in entries]
    while stack:
        mod, opt = stack.pop()
        # Importing a.b.c imports a and a.b first.
        parts = mod.split(".")
        chain = [".".join(parts[: i + 1]) for i in range(len(parts))]
        for name in chain:
            if name.split(".")[0] != "vllm":
                top = name.split(".")[0]
                if not opt:
                    required.setdefault(top, mod)
                else:
                    optional.setdefault(top, mod)
                break
            if name not in srcs or (name, opt) in seen or (name, False) in seen:
                continue
            seen.add((name, opt))
            for imported, o in module_imports(name, srcs[name], name in pkgs):
                stack.append((imported, opt or o))
    stdlib = set(sys.stdlib_module_names)
    result = {
        "entries": entries,
        "vllm_modules_reached": len({m for m, _ in seen}),
        "third_party_required": sorted(k for k in required if k not in stdlib),
        "third_party_optional_only": sorted(
            k for k in optional if k not in stdlib and k not in required
        ),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
