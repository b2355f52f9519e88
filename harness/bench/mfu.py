"""Model FLOPs utilisation (optional: --peak-tflops or --measure-peak): FLOPs per request from
the models' shapes, and the share of the device's peak that a throughput amounts to."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.paths import ROOT
from harness.workloads import Request


def safetensors_params(folder: Path) -> dict[str, int]:
    """Parameter counts read from the safetensors headers (no weights loaded): all tensors,
    and the input embedding table (`embed_tokens` / `wte` / `word_embeddings`)."""
    total = embedding = 0
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            n = int(np.prod(info["shape"])) if info["shape"] else 1
            total += n
            if any(k in name for k in ("embed_tokens", "wte.", "word_embeddings")):
                embedding += n
    return {"total": total, "input_embedding": embedding}


def model_flops(folder: Path) -> dict[str, Any]:
    """What the MFU formula needs of one model: matmul parameters and attention width."""
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)
    counts = safetensors_params(folder)
    tied = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    heads = int(text["num_attention_heads"])
    head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
    # The input embedding is a lookup, not a matmul; with tied embeddings the same matrix is
    # the LM head (a matmul), so it counts once.
    embedding = counts["input_embedding"]
    matmul = counts["total"] - embedding + (embedding if tied else 0)
    return {
        "folder": str(folder),
        "params_total": counts["total"],
        "params_input_embedding": counts["input_embedding"],
        "tie_word_embeddings": tied,
        "params_in_matmuls": matmul,
        "num_hidden_layers": int(text["num_hidden_layers"]),
        "attention_width": heads * head_dim,  # num_attention_heads x head_dim
    }


MFU_FORMULA = (
    "FLOPs of one scored sequence of T = prompt + completion tokens (every position is "
    "prefilled, the prompt too), summed over both models: 2 * params_in_matmuls * T "
    "(params_in_matmuls = all parameters except the input embedding table, a lookup; the LM "
    "head included) + causal attention 2 * num_hidden_layers * attention_width * T * (T + 1) "
    "(QK^T and AV over the T(T+1)/2 visible pairs); norms, activations, softmax and the "
    "log-softmax over the vocabulary are not counted. A grpo_group request counts its 16 full "
    "sequences (the peers prefill them all; prompt_logprobs requests read no prefix cache). "
    "achieved FLOP/s = scored_tokens_per_s * (request FLOPs / scored tokens, over the shape's "
    "variants); mfu = achieved FLOP/s / peak FLOP/s."
)


def sequence_flops(models: list[dict[str, Any]], length: int) -> float:
    return float(
        sum(
            2 * m["params_in_matmuls"] * length
            + 2 * m["num_hidden_layers"] * m["attention_width"] * length * (length + 1)
            for m in models
        )
    )


def shape_flops(models: list[dict[str, Any]], requests: list[Request]) -> dict[str, float]:
    lengths = [s.num_tokens for r in requests for s in r.inputs]
    total_tokens = sum(lengths)
    scored = sum(r.scored_tokens for r in requests)
    flops = sum(sequence_flops(models, length) for length in lengths)
    return {
        "flops_per_request": flops / len(requests),
        "flops_per_scored_token": flops / scored,
        "total_tokens_per_scored_token": total_tokens / scored,
        "flops_per_total_token": flops / total_tokens,
    }


def measure_peak(device: str) -> dict[str, Any]:
    """matmul_peak.py in a child process (the benchmark process keeps no CUDA context)."""
    script = ROOT / "loadtest" / "gpu" / "matmul_peak.py"
    command = [sys.executable, str(script)]
    if device == "cpu":
        command += ["--threads", str(len(os.sched_getaffinity(0)))]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    measured: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return measured


def mfu_report(report: dict[str, Any]) -> dict[str, Any] | None:
    """Per system and shape: MFU at the peak sustained point, at the closed-loop capacity,
    and at every sweep point (load, mfu)."""
    cfg = report["config"].get("mfu")
    if not cfg:
        return None
    peak_flops = cfg["peak_tflops"] * 1e12
    out: dict[str, Any] = {}
    for system, shapes in report["systems"].items():
        for shape, figures in shapes.items():
            per = cfg["shapes"][shape]
            pk = figures["peak"]
            achieved = pk["scored_tokens_per_s"] * per["flops_per_scored_token"]
            capacity = figures["capacity_rps"] * per["flops_per_request"]
            out.setdefault(system, {})[shape] = {
                "peak_scored_tokens_per_s": pk["scored_tokens_per_s"],
                "peak_total_tokens_per_s": pk["scored_tokens_per_s"]
                * per["total_tokens_per_scored_token"],
                "peak_achieved_tflops": achieved / 1e12,
                "mfu": achieved / peak_flops,
                "peak_sustained": pk["sustained"],
                "capacity_achieved_tflops": capacity / 1e12,
                "capacity_mfu": capacity / peak_flops,
                "points": [
                    [
                        p["load"],
                        p["scored_tokens_per_s"] * per["flops_per_scored_token"] / peak_flops,
                    ]
                    for p in figures["points"]
                ],
            }
    return out
